import Foundation

/// One Phoenix channel message in the v2 JSON serializer's array form:
/// `[join_ref, ref, topic, event, payload]` (`vsn=2.0.0`).
public struct PhoenixFrame: Equatable, Sendable {
    public var joinRef: String?
    public var ref: String?
    public var topic: String
    public var event: String
    /// The payload as a JSON object of strings, numbers, booleans, nested objects; kept as the
    /// decoded Foundation value so replies (`{"status": "ok", "response": {...}}`) can be read.
    public var payload: [String: JSONValue]

    public init(joinRef: String?, ref: String?, topic: String, event: String, payload: [String: JSONValue] = [:]) {
        self.joinRef = joinRef
        self.ref = ref
        self.topic = topic
        self.event = event
        self.payload = payload
    }

    /// Decodes a text frame. Untrusted input: anything that is not a five-element array with
    /// string topic and event and an object payload is `nil`, never a trap.
    public static func decode(_ text: String) -> PhoenixFrame? {
        guard let data = text.data(using: .utf8),
              let array = try? JSONDecoder().decode([JSONValue].self, from: data),
              array.count == 5
        else { return nil }
        guard case .string(let topic) = array[2], case .string(let event) = array[3],
              case .object(let payload) = array[4]
        else { return nil }
        return PhoenixFrame(joinRef: array[0].stringValue, ref: array[1].stringValue,
                            topic: topic, event: event, payload: payload)
    }

    /// Encodes the frame as the v2 array.
    public func encode() -> String {
        let array: [JSONValue] = [
            joinRef.map(JSONValue.string) ?? .null,
            ref.map(JSONValue.string) ?? .null,
            .string(topic), .string(event), .object(payload),
        ]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(array), let text = String(data: data, encoding: .utf8) else {
            return "[]"
        }
        return text
    }

    /// `payload.status` of a `phx_reply`.
    public var replyStatus: String? { payload["status"]?.stringValue }
}

/// A JSON value, enough for Phoenix payloads.
public enum JSONValue: Equatable, Sendable, Codable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let b = try? container.decode(Bool.self) { self = .bool(b) }
        else if let n = try? container.decode(Double.self) { self = .number(n) }
        else if let s = try? container.decode(String.self) { self = .string(s) }
        else if let a = try? container.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .number(let n): try container.encode(n)
        case .string(let s): try container.encode(s)
        case .array(let a): try container.encode(a)
        case .object(let o): try container.encode(o)
        }
    }
}

/// The request line of an HTTP/1.x request; headers are skipped, never interpreted.
public struct HTTPRequest: Sendable, Equatable {
    public var method: String
    /// The target without its query string.
    public var path: String
    public var query: String?

    public enum ParseResult: Equatable {
        case incomplete
        case tooLarge
        case malformed
        case request(HTTPRequest)
    }

    /// Looks for a whole header block (ending in an empty line) within `limit` bytes.
    /// RFC 9112 §2.2: "a recipient MAY recognize a single LF as a line terminator", so LF LF ends it too.
    public static func parse(_ bytes: [UInt8], limit: Int) -> ParseResult {
        guard let end = headerEnd(bytes) else {
            return bytes.count >= limit ? .tooLarge : .incomplete
        }
        guard end <= limit else { return .tooLarge }
        var lineEnd = 0
        while lineEnd < end && bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
        var line = bytes[0..<lineEnd]
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3,
              !parts[0].isEmpty, parts[0].count <= 16,
              parts[0].allSatisfy({ $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }),
              parts[1].first == UInt8(ascii: "/"),
              parts[1].allSatisfy({ $0 > 0x20 && $0 < 0x7F }),
              parts[2].elementsEqual("HTTP/1.1".utf8) || parts[2].elementsEqual("HTTP/1.0".utf8)
        else { return .malformed }
        let method = String(decoding: parts[0], as: UTF8.self)
        let target = String(decoding: parts[1], as: UTF8.self)
        if let mark = target.firstIndex(of: "?") {
            return .request(HTTPRequest(method: method, path: String(target[..<mark]),
                                        query: String(target[target.index(after: mark)...])))
        }
        return .request(HTTPRequest(method: method, path: target, query: nil))
    }

    /// The index just past the empty line that ends the header block, if present.
    private static func headerEnd(_ bytes: [UInt8]) -> Int? {
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "\n") {
                if i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "\n") { return i + 2 }
                if i + 2 < bytes.count && bytes[i + 1] == UInt8(ascii: "\r") && bytes[i + 2] == UInt8(ascii: "\n") {
                    return i + 3
                }
            }
            i += 1
        }
        return nil
    }
}

public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]
    public var extraHeaders: [Header]
    /// The Content-Length of the GET this answers (differs from `body.count` only for HEAD).
    var contentLength: Int

    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
    }

    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String,
                extraHeaders: [(String, String)] = []) {
        self.init(status: status, contentType: contentType, body: Array(body.utf8), extraHeaders: extraHeaders)
    }

    public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: [UInt8],
                extraHeaders: [(String, String)] = []) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.extraHeaders = extraHeaders.map { Header(name: $0.0, value: $0.1) }
        contentLength = body.count
    }

    func withoutBody() -> HTTPResponse {
        var copy = self
        copy.body = []
        return copy
    }

    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 400: return "Bad Request"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 503: return "Service Unavailable"
        default: return "Status"
        }
    }

    func serialized() -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(Self.reason(status))\r\n"
        head += "Content-Type: \(contentType)\r\nContent-Length: \(contentLength)\r\nConnection: close\r\n"
        for header in extraHeaders { head += "\(header.name): \(header.value)\r\n" }
        head += "\r\n"
        return Array(head.utf8) + body
    }
}

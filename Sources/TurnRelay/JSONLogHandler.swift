import Glibc
import Logging

/// One JSON object per line on standard error: time, level, label, message, metadata.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String) { self.label = label }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields = metadata
        if let extra = metadataProvider?.get() { fields.merge(extra) { $1 } }
        if let own = event.metadata { fields.merge(own) { $1 } }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var line = "{\"ts\":\(ts.tv_sec).\(threeDigits(Int(ts.tv_nsec) / 1_000_000)),\"level\":\"\(event.level)\""
        line += ",\"label\":\(Self.quote(label)),\"msg\":\(Self.quote(event.message.description))"
        for key in fields.keys.sorted() {
            line += ",\(Self.quote(key)):\(Self.quote(fields[key]?.description ?? ""))"
        }
        line += "}\n"
        var bytes = Array(line.utf8)
        _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += "\\u00" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

func threeDigits(_ value: Int) -> String {
    let digits = String(value)
    return String(repeating: "0", count: Swift.max(0, 3 - digits.count)) + digits
}

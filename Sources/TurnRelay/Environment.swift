import ArgumentParser
import Glibc

/// Every option can also come from an environment variable; the command line wins. Some options
/// also read the name Firezone's relay uses (`rust/relay/server/src/main.rs`, its clap `Args`), so
/// that a Firezone deployment's environment works unchanged: our name wins over Firezone's.
enum Environment {
    static func string(_ name: String) -> String? {
        guard let p = getenv(name) else { return nil }
        let value = String(cString: p)
        return value.isEmpty ? nil : value
    }

    /// Our variable, else Firezone's alias of it.
    static func string(_ name: String, firezone alias: String) -> String? {
        string(name) ?? string(alias)
    }

    /// Which of the two names is set (ours first), for messages.
    static func setName(_ name: String, firezone alias: String) -> String? {
        string(name) != nil ? name : string(alias) != nil ? alias : nil
    }

    static func value<T: LosslessStringConvertible>(_ name: String, firezone alias: String, as type: T.Type) throws -> T? {
        if string(name) != nil { return try value(name, as: type) }
        return try value(alias, as: type)
    }

    /// A comma-separated list (repeatable options).
    static func list(_ name: String) -> [String] {
        guard let s = string(name) else { return [] }
        return s.split(separator: ",").map { $0.trimmingCharacters() }.filter { !$0.isEmpty }
    }

    static func value<T: LosslessStringConvertible>(_ name: String, as: T.Type) throws -> T? {
        guard let s = string(name) else { return nil }
        guard let v = T(s.trimmingCharacters()) else {
            throw ValidationError("environment variable \(name)=\(s) is not a valid \(T.self)")
        }
        return v
    }

    static func flag(_ name: String) -> Bool {
        guard let s = string(name)?.lowercased() else { return false }
        return ["1", "true", "yes", "on"].contains(s)
    }
}

extension StringProtocol {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

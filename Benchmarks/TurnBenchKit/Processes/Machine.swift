import Foundation
import Glibc

/// The machine a result was measured on.
public struct Machine: Codable, Sendable, Equatable {
    public var processors: Int
    public var kernel: String
    public var cpuModel: String
    public var loadAverage: String

    public static func current() -> Machine {
        var u = utsname()
        uname(&u)
        func field<T>(_ v: T) -> String {
            withUnsafeBytes(of: v) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        }
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        let load = ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "")
            .split(separator: " ").prefix(3).joined(separator: " ")
        return Machine(processors: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))),
                       kernel: "\(field(u.sysname)) \(field(u.release))", cpuModel: model, loadAverage: load)
    }

    public var summary: String { "\(processors) CPUs (\(cpuModel)), \(kernel), load average \(loadAverage)" }
}

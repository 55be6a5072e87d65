import Foundation
import Testing

/// The README's option tables are written by hand; these tests keep them and `turn-relay --help`
/// from drifting apart: every option a subcommand's `--help` prints is in the README, and every
/// option the README's tables name is one the binary knows.
@Suite struct ReadmeOptionsTests {
    static let subcommands = ["serve", "credential"]

    @Test func everyOptionInHelpIsInTheReadme() throws {
        let documented = Self.options(in: try Self.readme())
        for subcommand in Self.subcommands {
            let help = try Self.help(of: subcommand)
            let options = Self.options(in: help)
            #expect(!options.isEmpty, "`turn-relay \(subcommand) --help` printed no options:\n\(help)")
            for option in options where option != "--help" {
                #expect(documented.contains(option), "README does not mention \(option) (from `turn-relay \(subcommand) --help`)")
            }
        }
    }

    @Test func everyOptionTheReadmeTablesNameExists() throws {
        let readme = try Self.readme()
        var known: Set<String> = []
        for subcommand in Self.subcommands { known.formUnion(Self.options(in: try Self.help(of: subcommand))) }
        // Options in table rows: lines starting with `|`, an option in backticks.
        let rows = readme.split(separator: "\n").filter { $0.hasPrefix("| `--") }
        #expect(rows.count > 20, "README's option tables not found")
        for row in rows {
            for option in Self.options(in: String(row)) {
                #expect(known.contains(option), "README's table names \(option), which `--help` does not print: \(row)")
            }
        }
    }

    /// `--name` tokens: two dashes, then letters, digits and dashes.
    static func options(in text: String) -> Set<String> {
        var found: Set<String> = []
        let scalars = Array(text.unicodeScalars)
        var i = 0
        while i + 2 < scalars.count {
            let boundary = i == 0 || !(CharacterSet.alphanumerics.contains(scalars[i - 1]) || scalars[i - 1] == "-")
            if boundary, scalars[i] == "-", scalars[i + 1] == "-", CharacterSet.lowercaseLetters.contains(scalars[i + 2]) {
                var j = i + 2
                var name = "--"
                while j < scalars.count, CharacterSet.lowercaseLetters.contains(scalars[j]) || CharacterSet.decimalDigits.contains(scalars[j]) || scalars[j] == "-" {
                    name.unicodeScalars.append(scalars[j]); j += 1
                }
                while name.hasSuffix("-") { name.removeLast() }
                found.insert(name)
                i = j
            } else {
                i += 1
            }
        }
        return found
    }

    static func readme() throws -> String {
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("README.md")
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
                return try String(contentsOf: candidate, encoding: .utf8)
            }
            directory = directory.deletingLastPathComponent()
        }
        Issue.record("no README.md above \(#filePath)")
        throw CancellationError()
    }

    static func help(of subcommand: String) throws -> String {
        let process = Process()
        process.executableURL = try RelayBinaryReloadTests.turnRelayBinary()
        process.arguments = [subcommand, "--help"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}

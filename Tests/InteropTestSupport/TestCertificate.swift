import Foundation
import Testing

/// A self-signed certificate for TURN over TLS in tests (CN turn.test, ECDSA P-256, one day),
/// made once per test process with `openssl req`. nil (with `missing` saying why) when openssl
/// is not there: TLS tests then skip with that reason.
enum TestCertificate {
    struct Files: Sendable {
        let certificate: String
        let key: String
    }

    static let made: Result<Files, MakeFailed> = make(commonName: "turn.test")

    static var files: Files? { try? made.get() }
    static var missing: Comment {
        if case .failure(let f) = made { return Comment(rawValue: f.description) }
        return ""
    }

    struct MakeFailed: Error, CustomStringConvertible {
        let description: String
    }

    /// A new pair in a temporary directory.
    static func make(commonName: String) -> Result<Files, MakeFailed> {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("turn-test-cert-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            return .failure(MakeFailed(description: "cannot create \(directory.path): \(error)"))
        }
        let certificate = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        guard let openssl = ["/usr/bin/openssl", "/usr/local/bin/openssl"].first(where: FileManager.default.isExecutableFile)
        else { return .failure(MakeFailed(description: "openssl is not installed (scripts/install-deps installs it)")) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: openssl)
        process.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                             "-days", "1", "-subj", "/CN=\(commonName)", "-keyout", key, "-out", certificate]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
            process.waitUntilExit()
        } catch {
            return .failure(MakeFailed(description: "openssl req could not run: \(error)"))
        }
        guard process.terminationStatus == 0, FileManager.default.fileExists(atPath: certificate) else {
            return .failure(MakeFailed(description: "openssl req failed with status \(process.terminationStatus)"))
        }
        return .success(Files(certificate: certificate, key: key))
    }
}

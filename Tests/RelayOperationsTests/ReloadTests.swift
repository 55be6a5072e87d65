import Glibc
import RelayCore
import RelayIO
import RelayOperations
import Testing

@Suite struct ReloadTests {
    @Test func credentialsFileParsesEveryKey() throws {
        let file = try CredentialsFile(parsing: """
            # rotated secrets, newest first
            auth-secret = new-secret
            auth-secret=old-secret   # trailing comment
            user = alice:pass:with:colons
            \tuser = bob:b
            firezone-secret = fz
            allow-peer = 10.1.0.0/16
            deny-peer = 192.0.2.0/24

            """)
        #expect(file.restSecrets == ["new-secret", "old-secret"])
        #expect(file.staticUsers == ["alice": "pass:with:colons", "bob": "b"])
        #expect(file.firezoneSecrets == ["fz"])
        #expect(file.allowPeers == [CIDR("10.1.0.0/16")!])
        #expect(file.denyPeers == [CIDR("192.0.2.0/24")!])
        let merged = file.credentials(addingTo: CredentialStore(staticUsers: ["bob": "cli", "carol": "c"], restSecrets: ["cli"]))
        #expect(merged.staticUsers == ["alice": "pass:with:colons", "bob": "b", "carol": "c"])
        #expect(merged.restSecrets == ["new-secret", "old-secret", "cli"])
    }

    @Test func credentialsFileErrorsNameTheLine() {
        #expect(throws: CredentialsFile.ParseError(line: 2, message: "expected key = value")) {
            try CredentialsFile(parsing: "user = a:b\nnonsense\n")
        }
        #expect(throws: CredentialsFile.ParseError(line: 1, message: "user takes name:password")) {
            try CredentialsFile(parsing: "user = :b")
        }
        #expect(throws: CredentialsFile.ParseError(line: 1, message: "allow-peer 10.0.0.0/33 is not a CIDR")) {
            try CredentialsFile(parsing: "allow-peer = 10.0.0.0/33")
        }
        #expect(throws: CredentialsFile.ParseError(line: 1, message: "unknown key colour")) {
            try CredentialsFile(parsing: "colour = blue")
        }
        #expect(throws: CredentialsFile.ParseError.self) {
            try CredentialsFile.load(path: "/nonexistent/credentials")
        }
    }

    @Test func credentialsFileLoadsFromDisk() throws {
        var template = Array("/tmp/relay-credentials-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(fd >= 0)
        let path = String(cString: template)
        defer { unlink(path) }
        let text = Array("auth-secret = s1\n".utf8)
        _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        #expect(try CredentialsFile.load(path: path).restSecrets == ["s1"])
    }

    /// Many posts from one thread while "workers" poll on others: each worker ends on the last
    /// generation and never sees generations go backwards.
    @Test func mailboxDeliversTheLatestUpdateToEveryWorker() async {
        let mailbox = ReloadMailbox<TURNReload>()
        let workers = 4
        // Made before anything is posted, as a worker's is made at its start.
        let receivers = (0..<workers).map { mailbox.receiver(worker: $0) }
        await withTaskGroup(of: Bool.self) { group in
            for index in 0..<workers {
                group.addTask {
                    var receiver = receivers[index]
                    var last: UInt64 = 0
                    let deadline = MonotonicClock.nanoseconds() + 5_000_000_000
                    while MonotonicClock.nanoseconds() < deadline {
                        if let update = receiver.poll() {
                            if update.generation < last { return false }
                            last = update.generation
                            // The credentials name their generation: the pair is never torn.
                            if update.value.credentials.restSecrets != ["g\(update.generation)"] { return false }
                            receiver.acknowledge(update)
                            if last == 200 { return true }
                        }
                        await Task.yield()
                    }
                    return false
                }
            }
            for g in 1...200 {
                mailbox.post(credentials: CredentialStore(restSecrets: ["g\(g)"]), peerPolicy: PeerPolicy())
            }
            for await ok in group { #expect(ok) }
        }
        #expect(mailbox.appliedGenerations() == [0: 200, 1: 200, 2: 200, 3: 200])
    }
}

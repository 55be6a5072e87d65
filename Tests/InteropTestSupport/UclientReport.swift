/// The numbers `turnutils_uclient` prints when it finishes, e.g.
///
///     6: : start_mclient: tot_send_msgs=40, tot_recv_msgs=40
///     6: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
///
/// and the relayed addresses it was given ("IPv4. Received relay addr: 127.0.0.1:40044", printed with -v).
struct UclientReport {
    var sentMessages: Int
    var receivedMessages: Int
    var lostPackets: Int
    var sendDropped: Int
    /// Distinct relayed addresses reported (uclient prints each one more than once).
    var relayedIPv4Allocations: Int
    var relayedIPv6Allocations: Int
    /// The ports of all relayed addresses reported, both families.
    var relayedPorts: Set<Int> = []

    /// Whether some relayed port is even and the next port was relayed too: an RTP/RTCP pair
    /// from EVEN-PORT with the reserve bit and RESERVATION-TOKEN.
    var hasEvenOddPortPair: Bool {
        relayedPorts.contains { $0 % 2 == 0 && relayedPorts.contains($0 + 1) }
    }

    /// nil when the final statistics lines are absent (the client failed before finishing).
    init?(output: String) {
        var totals: (Int, Int)?
        var loss: (Int, Int)?
        var ipv4: Set<Substring> = []
        var ipv6: Set<Substring> = []
        for line in output.split(whereSeparator: \.isNewline) {
            if let range = line.range(of: "IPv4. Received relay addr: ") { ipv4.insert(line[range.upperBound...]) }
            if let range = line.range(of: "IPv6. Received relay addr: ") { ipv6.insert(line[range.upperBound...]) }
            // The final totals line has no "msz=" (the periodic progress lines do).
            if line.contains("start_mclient: tot_send_msgs="), !line.contains("msz="),
                let sent = Self.integer(after: "tot_send_msgs=", in: line),
                let received = Self.integer(after: "tot_recv_msgs=", in: line)
            {
                totals = (sent, received)
            }
            if let lost = Self.integer(after: "Total lost packets ", in: line),
                let dropped = Self.integer(after: "total send dropped ", in: line)
            {
                loss = (lost, dropped)
            }
        }
        guard let totals, let loss else { return nil }
        sentMessages = totals.0
        receivedMessages = totals.1
        lostPackets = loss.0
        sendDropped = loss.1
        relayedIPv4Allocations = ipv4.count
        relayedIPv6Allocations = ipv6.count
        relayedPorts = Set(ipv4.union(ipv6).compactMap { address in
            address.split(separator: ":").last.flatMap { Int($0.prefix(while: \.isNumber)) }
        })
    }

    private static func integer(after marker: String, in line: Substring) -> Int? {
        guard let range = line.range(of: marker) else { return nil }
        let digits = line[range.upperBound...].prefix(while: \.isNumber)
        return Int(digits)
    }
}

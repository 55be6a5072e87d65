@testable import OperationsTestSupport

/// One /metrics scrape of the relay under test, read by metric name and labels.
struct RelayMetrics {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    let samples: [Sample]

    init(_ exposition: Exposition) {
        samples = exposition.samples.map { key, value in
            guard let open = key.firstIndex(of: "{"), key.hasSuffix("}") else {
                return Sample(name: key, labels: [:], value: value)
            }
            var labels: [String: String] = [:]
            // Label values here are enum-like words: no commas, quotes or escapes inside them.
            for pair in key[key.index(after: open)..<key.index(before: key.endIndex)].split(separator: ",") {
                guard let equals = pair.firstIndex(of: "=") else { continue }
                labels[String(pair[..<equals])] = pair[pair.index(after: equals)...].trimmingCharacters(in: "\"")
            }
            return Sample(name: String(key[..<open]), labels: labels, value: value)
        }
    }

    /// The sum of `name`'s samples whose labels include `labels`.
    func total(_ name: String, _ labels: [String: String] = [:]) -> Int {
        Int(samples.filter { sample in
            sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value }
        }.reduce(0) { $0 + $1.value })
    }

    /// Datagrams relayed in one direction (`client_to_peer` or `peer_to_client`) on one datapath
    /// (`userspace` or `xdp`).
    func relayed(_ direction: String, datapath: String) -> Int {
        total("relay_relayed_packets_total", ["direction": direction, "datapath": datapath])
    }

    /// Datagrams relayed in one direction, both datapaths together.
    func relayedOnEitherPath(_ direction: String) -> Int {
        relayed(direction, datapath: "userspace") + relayed(direction, datapath: "xdp")
    }

    func drops(_ reason: String) -> Int { total("relay_drops_total", ["reason": reason]) }
}

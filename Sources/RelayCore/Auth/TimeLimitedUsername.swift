/// A username of the form `<unix-expiry>[:<suffix>]`, shared by the TURN REST API
/// (suffix = the user id) and Firezone (suffix = the salt).
///
/// The expiry is 1...20 ASCII digits without a leading zero (except "0" itself) that fit in
/// a UInt64; anything else (signs, spaces, hex, overflow, an empty part before or after the
/// colon) is not a time-limited username.
struct TimeLimitedUsername {
    var expiry: UInt64
    /// Everything after the first colon; nil when there is no colon.
    var suffix: Substring?

    init?(_ username: String) {
        let colon = username.firstIndex(of: ":")
        let digits = username[..<(colon ?? username.endIndex)].utf8
        guard !digits.isEmpty, digits.count <= 20 else { return nil }
        if digits.count > 1 && digits.first == UInt8(ascii: "0") { return nil }
        var value: UInt64 = 0
        for d in digits {
            guard d >= UInt8(ascii: "0"), d <= UInt8(ascii: "9") else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(d - UInt8(ascii: "0")))
            guard !o1, !o2 else { return nil }
            value = s
        }
        expiry = value
        if let colon {
            let rest = username[username.index(after: colon)...]
            guard !rest.isEmpty else { return nil }
            suffix = rest
        } else {
            suffix = nil
        }
    }
}

import Testing
@testable import InteropTestSupport

/// The parser that turns turnutils_uclient's closing lines into numbers, on text as coturn 4.6 prints it.
struct UclientReportTests {
    @Test func parsesFinalStatisticsAndRelayedAddresses() {
        let output = """
            0: : IPv4. Received relay addr: 127.0.0.1:40044
            0: : IPv4. Received relay addr: 127.0.0.1:40044
            0: : IPv6. Received relay addr: ::1:40088
            0: : IPv4. Received relay addr: 127.0.0.1:40046
            5: : start_mclient: msz=2, tot_send_msgs=20, tot_recv_msgs=19, tot_send_bytes ~ 2000, tot_recv_bytes ~ 1900
            6: : start_mclient: tot_send_msgs=40, tot_recv_msgs=38
            6: : start_mclient: tot_send_bytes ~ 4000, tot_recv_bytes ~ 3800
            6: : Total transmit time is 6
            6: : Total lost packets 2 (5.000000%), total send dropped 1 (2.500000%)
            6: : Average round trip delay 0.175000 ms; min = 0 ms, max = 7 ms
            """
        let report = UclientReport(output: output)
        #expect(report?.sentMessages == 40)
        #expect(report?.receivedMessages == 38)
        #expect(report?.lostPackets == 2)
        #expect(report?.sendDropped == 1)
        #expect(report?.relayedIPv4Allocations == 2)
        #expect(report?.relayedIPv6Allocations == 1)
        #expect(report?.relayedPorts == [40044, 40046, 40088])
        #expect(report?.hasEvenOddPortPair == false)
    }

    @Test func findsAnRTPAndRTCPPortPair() {
        let output = """
            0: : IPv4. Received relay addr: 127.0.0.1:61052
            0: : IPv4. Received relay addr: 127.0.0.1:61122
            0: : IPv4. Received relay addr: 127.0.0.1:61123
            0: : start_mclient: tot_send_msgs=20, tot_recv_msgs=20
            0: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
            """
        #expect(UclientReport(output: output)?.hasEvenOddPortPair == true)
    }

    @Test func missingFinalLinesIsNoReport() {
        let output = """
            0: : IPv4. Received relay addr: 127.0.0.1:40044
            1: : start_mclient: msz=2, tot_send_msgs=0, tot_recv_msgs=0, tot_send_bytes ~ 0, tot_recv_bytes ~ 0
            0: : error 508 (Cannot create socket)
            """
        #expect(UclientReport(output: output) == nil)
    }
}

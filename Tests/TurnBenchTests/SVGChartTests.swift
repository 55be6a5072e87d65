import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import TurnBenchKit

final class ElementCounter: NSObject, XMLParserDelegate {
    var elements: [String: Int] = [:]
    var texts: [String] = []
    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        elements[name, default: 0] += 1
    }
    func parser(_ parser: XMLParser, foundCharacters string: String) { texts.append(string) }
}

func parseSVG(_ svg: String) -> (ok: Bool, counter: ElementCounter) {
    let parser = XMLParser(data: Data(svg.utf8))
    let counter = ElementCounter()
    parser.delegate = counter
    return (parser.parse(), counter)
}

@Test func comparisonChartIsWellFormedSVGWithOneLinePerServerAndPanel() {
    var runs: [RunRow] = []
    for r in 1...2 {
        for (t, d) in [(1000.0, 1000.0), (10_000, 9_000), (0, 30_000)] {
            runs.append(row("turn-relay <new>", round: r, target: t, delivered: d, loss: 0, cpu: 1.5, p99: 10))
            runs.append(row("coturn & co", round: r, target: t, delivered: d / 3, loss: 0.4, cpu: 6, p99: 90))
        }
    }
    let table = ComparisonTable(runs: runs, serverA: "turn-relay <new>", serverB: "coturn & co")
    let svg = SVGChart.comparison(table).render()
    let (ok, counter) = parseSVG(svg)
    #expect(ok)
    #expect(counter.elements["svg"] == 1)
    // Two panels × two servers.
    #expect(counter.elements["polyline"] == 4)
    #expect(counter.elements["circle"] == 12)
    // Names are escaped, and come back intact through the parser.
    #expect(svg.contains("turn-relay &lt;new&gt;"))
    #expect(counter.texts.joined().contains("coturn & co"))
}

@Test func chartWithNoDataIsStillWellFormed() {
    let svg = SVGChart(title: "empty", panels: [SVGChart.Panel(title: "p", xLabel: "x", yLabel: "y", series: [])]).render()
    #expect(parseSVG(svg).ok)
    let nan = SVGChart(title: "nan", panels: [SVGChart.Panel(title: "p", xLabel: "x", yLabel: "y",
        series: [SVGChart.Series(name: "s", color: "red", points: [(x: .nan, y: 1), (x: 1, y: .infinity)])])]).render()
    #expect(parseSVG(nan).ok)
}

@Test func niceTicksCoverTheMaximum() {
    let unit = niceTicks(max: 1)
    #expect(unit.count == 6)
    #expect(abs((unit.last ?? 0) - 1) < 1e-9)
    #expect(niceTicks(max: 7).map { Int($0) } == [0, 2, 4, 6, 8])
    let t = niceTicks(max: 123_456)
    #expect(t.first == 0)
    #expect((t.last ?? 0) >= 123_456)
    #expect(t.count <= 8)
    #expect(niceTicks(max: 0) == [0, 1])
    #expect(niceTicks(max: .nan) == [0, 1])
}

@Test func xmlEscaping() {
    #expect(escapeXML("a<b>&\"c'") == "a&lt;b&gt;&amp;&quot;c&apos;")
}

@Test func singleServerChartHasNoEmptySeriesOrLegend() {
    let runs = [row("coturn", round: 1, target: 1000, delivered: 1000, loss: 0, cpu: 5, p99: 10),
                row("coturn", round: 1, target: 0, delivered: 9000, loss: 0.3, cpu: 3, p99: 900)]
    let table = ComparisonTable(runs: runs, serverA: "coturn", serverB: "-")
    let svg = SVGChart.comparison(table).render()
    let (ok, counter) = parseSVG(svg)
    #expect(ok)
    #expect(counter.elements["polyline"] == 2)
    #expect(!svg.contains(">-<"))
    #expect(svg.contains("coturn (medians)"))
}

/// A plain-text SVG line chart: one or more panels side by side, each with axes, ticks and one
/// polyline per series. No dependencies; the output is well-formed XML.
public struct SVGChart: Sendable {
    public struct Series: Sendable {
        public var name: String
        public var color: String
        public var points: [(x: Double, y: Double)]
        public init(name: String, color: String, points: [(x: Double, y: Double)]) {
            self.name = name
            self.color = color
            self.points = points
        }
    }

    public struct Panel: Sendable {
        public var title: String
        public var xLabel: String
        public var yLabel: String
        public var series: [Series]
        /// Draw the y = x line (delivered = offered).
        public var diagonal: Bool
        public init(title: String, xLabel: String, yLabel: String, series: [Series], diagonal: Bool = false) {
            self.title = title
            self.xLabel = xLabel
            self.yLabel = yLabel
            self.series = series
            self.diagonal = diagonal
        }
    }

    public var title: String
    public var panels: [Panel]
    public init(title: String, panels: [Panel]) {
        self.title = title
        self.panels = panels
    }

    static let panelWidth = 480.0, panelHeight = 360.0
    static let left = 70.0, right = 20.0, top = 50.0, bottom = 50.0

    public func render() -> String {
        let width = Self.panelWidth * Double(max(panels.count, 1))
        let height = Self.panelHeight + 30
        var s = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(num(width))\" height=\"\(num(height))\" viewBox=\"0 0 \(num(width)) \(num(height))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        s += "<rect x=\"0\" y=\"0\" width=\"\(num(width))\" height=\"\(num(height))\" fill=\"white\"/>\n"
        s += "<text x=\"\(num(width / 2))\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">\(escapeXML(title))</text>\n"
        for (i, panel) in panels.enumerated() {
            s += renderPanel(panel, originX: Double(i) * Self.panelWidth, originY: 20)
        }
        s += "</svg>\n"
        return s
    }

    func renderPanel(_ p: Panel, originX: Double, originY: Double) -> String {
        let plotW = Self.panelWidth - Self.left - Self.right
        let plotH = Self.panelHeight - Self.top - Self.bottom
        let x0 = originX + Self.left, y0 = originY + Self.top + plotH
        let all = p.series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
        var xMax = all.map(\.x).max() ?? 1
        var yMax = all.map(\.y).max() ?? 1
        if p.diagonal { let m = max(xMax, yMax); xMax = m; yMax = m }
        let xTicks = niceTicks(max: xMax), yTicks = niceTicks(max: yMax)
        let xTop = xTicks.last ?? 1, yTop = yTicks.last ?? 1
        func px(_ x: Double) -> Double { x0 + (xTop > 0 ? x / xTop : 0) * plotW }
        func py(_ y: Double) -> Double { y0 - (yTop > 0 ? y / yTop : 0) * plotH }

        var s = "<g>\n"
        s += "<text x=\"\(num(originX + Self.panelWidth / 2))\" y=\"\(num(originY + 25))\" text-anchor=\"middle\" font-size=\"13\">\(escapeXML(p.title))</text>\n"
        s += "<line x1=\"\(num(x0))\" y1=\"\(num(y0))\" x2=\"\(num(x0 + plotW))\" y2=\"\(num(y0))\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(num(x0))\" y1=\"\(num(y0))\" x2=\"\(num(x0))\" y2=\"\(num(y0 - plotH))\" stroke=\"black\"/>\n"
        for t in xTicks {
            s += "<line x1=\"\(num(px(t)))\" y1=\"\(num(y0))\" x2=\"\(num(px(t)))\" y2=\"\(num(y0 + 4))\" stroke=\"black\"/>"
            s += "<text x=\"\(num(px(t)))\" y=\"\(num(y0 + 16))\" text-anchor=\"middle\">\(escapeXML(short(t)))</text>\n"
        }
        for t in yTicks {
            s += "<line x1=\"\(num(x0 - 4))\" y1=\"\(num(py(t)))\" x2=\"\(num(x0 + plotW))\" y2=\"\(num(py(t)))\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(num(x0 - 6))\" y=\"\(num(py(t) + 4))\" text-anchor=\"end\">\(escapeXML(short(t)))</text>\n"
        }
        s += "<text x=\"\(num(x0 + plotW / 2))\" y=\"\(num(y0 + 34))\" text-anchor=\"middle\">\(escapeXML(p.xLabel))</text>\n"
        s += "<text x=\"\(num(originX + 14))\" y=\"\(num(y0 - plotH / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 \(num(originX + 14)) \(num(y0 - plotH / 2)))\">\(escapeXML(p.yLabel))</text>\n"
        if p.diagonal {
            s += "<line x1=\"\(num(px(0)))\" y1=\"\(num(py(0)))\" x2=\"\(num(px(xTop)))\" y2=\"\(num(py(min(xTop, yTop))))\" stroke=\"#999\" stroke-dasharray=\"4 4\"/>\n"
        }
        for (i, series) in p.series.filter({ !$0.points.isEmpty }).enumerated() {
            let pts = series.points.filter { $0.x.isFinite && $0.y.isFinite }.sorted { $0.x < $1.x }
            if !pts.isEmpty {
                let list = pts.map { "\(num(px($0.x))),\(num(py($0.y)))" }.joined(separator: " ")
                s += "<polyline fill=\"none\" stroke=\"\(escapeXML(series.color))\" stroke-width=\"2\" points=\"\(list)\"/>\n"
                for pt in pts {
                    s += "<circle cx=\"\(num(px(pt.x)))\" cy=\"\(num(py(pt.y)))\" r=\"3\" fill=\"\(escapeXML(series.color))\"/>\n"
                }
            }
            let ly = originY + Self.top + 14 * Double(i)
            s += "<rect x=\"\(num(x0 + 10))\" y=\"\(num(ly - 8))\" width=\"10\" height=\"10\" fill=\"\(escapeXML(series.color))\"/>"
            s += "<text x=\"\(num(x0 + 24))\" y=\"\(num(ly + 1))\">\(escapeXML(series.name))</text>\n"
        }
        s += "</g>\n"
        return s
    }

    /// The `compare` chart: delivered vs offered packet rate, and relay CPU per packet vs offered.
    public static func comparison(_ table: ComparisonTable) -> SVGChart {
        let colors = ["#d62728", "#1f77b4"]
        func series(_ name: String, _ color: String, _ pick: (ComparisonTable.Row) -> ComparisonTable.Cell?,
                    _ y: (ComparisonTable.Cell) -> Double?) -> Series {
            Series(name: name, color: color, points: table.rows.compactMap(pick).compactMap { c in
                y(c).map { (x: c.offeredPPS, y: $0) }
            })
        }
        let delivered = Panel(title: "Delivered vs offered", xLabel: "offered packets/s", yLabel: "delivered packets/s",
                              series: [series(table.serverA, colors[0], { $0.a }, { $0.deliveredPPS }),
                                       series(table.serverB, colors[1], { $0.b }, { $0.deliveredPPS })],
                              diagonal: true)
        let cpu = Panel(title: "Relay CPU per relayed packet", xLabel: "offered packets/s", yLabel: "CPU µs / packet",
                        series: [series(table.serverA, colors[0], { $0.a }, { $0.relayCPUMicrosPerPacket }),
                                 series(table.serverB, colors[1], { $0.b }, { $0.relayCPUMicrosPerPacket })])
        let title = table.rows.contains { $0.b != nil } ? "\(table.serverA) vs \(table.serverB) (medians)" : "\(table.serverA) (medians)"
        return SVGChart(title: title, panels: [delivered, cpu])
    }
}

/// Round tick values from 0 up to at least `max` (about five steps of 1, 2 or 5 × 10^k).
func niceTicks(max m: Double) -> [Double] {
    guard m.isFinite, m > 0 else { return [0, 1] }
    let raw = m / 5
    var mag = 1.0
    while mag * 10 <= raw { mag *= 10 }
    while mag > raw { mag /= 10 }
    let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? mag * 10
    var ticks: [Double] = [0]
    var v = 0.0
    var guardCount = 0
    while v < m && guardCount < 100 {
        v += step
        ticks.append(v)
        guardCount += 1
    }
    return ticks
}

func short(_ v: Double) -> String {
    if v >= 1e6 { return fixed(v / 1e6, v.truncatingRemainder(dividingBy: 1e6) == 0 ? 0 : 1) + "M" }
    if v >= 1e3 { return fixed(v / 1e3, v.truncatingRemainder(dividingBy: 1e3) == 0 ? 0 : 1) + "k" }
    if v == v.rounded() { return fixed(v, 0) }
    return fixed(v, 2)
}

func num(_ v: Double) -> String { fixed(v, 1) }

public func escapeXML(_ s: String) -> String {
    var out = ""
    for c in s {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default: out.append(c)
        }
    }
    return out
}

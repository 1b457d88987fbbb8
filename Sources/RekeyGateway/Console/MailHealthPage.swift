import RekeyAdminModel

/// The mail health page: the outbox now, the last hour by outcome and by recipient domain, and
/// the last 24 hours of delivery attempts as a server-drawn SVG chart (with the same figures as
/// a table, for screen readers and for copying).
enum MailHealthPage {
    static func render(_ health: Admin.MailHealth, domain: Admin.DomainCheck? = nil, layout: ConsoleLayout) -> Console.Rendered {
        let oldest = health.queueDepth == 0 ? "—" : Self.duration(seconds: health.oldestQueuedAgeSeconds)
        let stats = """
            <div class="stats">
            <div class="stat"><span class="value">\(health.queueDepth)</span><span class="label">waiting to be delivered</span></div>
            <div class="stat"><span class="value">\(oldest)</span><span class="label">oldest has waited</span></div>
            <div class="stat"><span class="value">\(ConsoleLayout.time(health.lastAcceptedAt))</span><span class="label">last delivery</span></div>
            <div class="stat"><span class="value">\(ConsoleLayout.time(health.lastAttemptAt))</span><span class="label">last attempt of any outcome</span></div>
            </div>
            """
        let hour = health.lastHour
        let domains = health.lastHourByDomain.map { figures in
            "<tr><td class=\"mono\">\(HTML.escape(figures.key))</td><td>\(figures.accepted)</td><td>\(figures.temporaryFailures)</td><td>\(figures.permanentFailures)</td></tr>"
        }.joined()
        let lastHour = """
            <section class="panel" aria-labelledby="hour"><h2 id="hour">The last hour</h2>
            <div class="table-wrap" tabindex="0"><table>
            <thead><tr><th scope="col">Recipient domain</th><th scope="col">Delivered</th><th scope="col">Deferred</th><th scope="col">Bounced</th></tr></thead>
            <tbody><tr><td><strong>All</strong></td><td><strong>\(hour.accepted)</strong></td><td><strong>\(hour.temporaryFailures)</strong></td><td><strong>\(hour.permanentFailures)</strong></td></tr>\(domains)</tbody>
            </table></div></section>
            """
        let chart = """
            <section class="panel" aria-labelledby="day"><h2 id="day">The last 24 hours</h2>
            \(Self.chart(health.hourly))
            <ul class="legend"><li><span class="swatch accepted"></span>Delivered</li><li><span class="swatch temporary"></span>Deferred</li><li><span class="swatch permanent"></span>Bounced</li></ul>
            <details><summary>The figures</summary>\(Self.table(health.hourly))</details>
            </section>
            """
        let server = "<p class=\"muted\">Delivering by \(HTML.escape(health.transport)) to <span class=\"mono\">\(HTML.escape(health.server))</span>.</p>"
        return Console.Rendered(html: layout.page("Mail health", section: .health, stats + server + Self.domain(domain) + chart + lastHour))
    }

    /// The sending domain as receivers see it: one row per finding, problems first, each with
    /// its fix; the records to publish are for whoever runs the domain's DNS.
    static func domain(_ check: Admin.DomainCheck?) -> String {
        guard let check else {
            return "<section class=\"panel\" aria-labelledby=\"domain\"><h2 id=\"domain\">Sending domain</h2><p class=\"muted\">The notifier did not answer the domain check.</p></section>"
        }
        let order = ["problem": 0, "warning": 1, "ok": 2]
        let rows = check.findings.enumerated().sorted { (order[$0.element.status] ?? 3, $0.offset) < (order[$1.element.status] ?? 3, $1.offset) }.map { _, finding in
            let label = finding.status == "ok" ? "OK" : finding.status == "warning" ? "Warning" : "Problem"
            let fix = finding.fix.isEmpty ? "" : "<div class=\"fix\">Fix: <span class=\"mono\">\(HTML.escape(finding.fix))</span></div>"
            return "<tr><td><span class=\"chip \(finding.status == "ok" ? "good" : finding.status == "warning" ? "warn" : "bad")\">\(label)</span></td>"
                + "<td>\(HTML.escape(finding.check.uppercased()))</td><td>\(HTML.escape(finding.summary))\(fix)</td></tr>"
        }.joined()
        let problems = check.findings.filter { $0.status == "problem" }.count
        let headline = problems == 0
            ? "Receivers can authenticate mail from \(HTML.escape(check.fromDomain))."
            : "\(problems) problem\(problems == 1 ? "" : "s") make\(problems == 1 ? "s" : "") mail from \(HTML.escape(check.fromDomain)) likely to land in spam."
        return """
            <section class="panel" aria-labelledby="domain"><h2 id="domain">Sending domain</h2>
            <p>\(headline) <span class="muted">Checked \(ConsoleLayout.time(check.checkedAt)) with \(HTML.escape(check.dnsServer)); <span class="mono">rekey mail check-domain --fresh</span> checks again.</span></p>
            <div class="table-wrap" tabindex="0"><table>
            <thead><tr><th scope="col">Status</th><th scope="col">Check</th><th scope="col">Finding</th></tr></thead>
            <tbody>\(rows)</tbody></table></div></section>
            """
    }

    /// Stacked bars, one per hour, oldest on the left; colours come from the stylesheet's classes.
    static func chart(_ hours: [Admin.MailHealth.Figures]) -> String {
        let width = 720.0, height = 200.0, left = 36.0, bottom = 24.0, top = 8.0
        let highest = max(1, hours.map { $0.accepted + $0.temporaryFailures + $0.permanentFailures }.max() ?? 1)
        let scale = Self.niceCeiling(highest)
        let slot = (width - left) / Double(max(hours.count, 1))
        let barWidth = max(2, slot * 0.7)
        let plot = height - bottom - top
        var shapes = ""
        for (index, hour) in hours.enumerated() {
            let x = left + Double(index) * slot + (slot - barWidth) / 2
            var y = height - bottom
            for (count, kind) in [(hour.accepted, "accepted"), (hour.temporaryFailures, "temporary"), (hour.permanentFailures, "permanent")] where count > 0 {
                let h = plot * Double(count) / Double(scale)
                y -= h
                shapes += "<rect class=\"\(kind)\" x=\"\(Self.number(x))\" y=\"\(Self.number(y))\" width=\"\(Self.number(barWidth))\" height=\"\(Self.number(h))\">"
                    + "<title>\(HTML.escape(Self.hourLabel(hour.key))): \(count) \(kind == "accepted" ? "delivered" : kind == "temporary" ? "deferred" : "bounced")</title></rect>"
            }
            if index % 3 == 0 || index == hours.count - 1 {
                shapes += "<text x=\"\(Self.number(x + barWidth / 2))\" y=\"\(Self.number(height - 6))\" text-anchor=\"middle\">\(HTML.escape(Self.hourLabel(hour.key)))</text>"
            }
        }
        let axis = "<line class=\"axis\" x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width)\" y2=\"\(height - bottom)\"/>"
            + "<line class=\"axis\" x1=\"\(left)\" y1=\"\(top)\" x2=\"\(width)\" y2=\"\(top)\"/>"
            + "<text x=\"\(left - 6)\" y=\"\(top + 4)\" text-anchor=\"end\">\(scale)</text>"
            + "<text x=\"\(left - 6)\" y=\"\(height - bottom)\" text-anchor=\"end\">0</text>"
        let total = hours.reduce(0) { $0 + $1.accepted + $1.temporaryFailures + $1.permanentFailures }
        return "<svg class=\"chart\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"Delivery attempts per hour over the last 24 hours: \(total) in all\">"
            + axis + shapes + "</svg>"
    }

    static func table(_ hours: [Admin.MailHealth.Figures]) -> String {
        let rows = hours.reversed().map { hour in
            "<tr><td>\(HTML.escape(Self.hourLabel(hour.key))) UTC</td><td>\(hour.accepted)</td><td>\(hour.temporaryFailures)</td><td>\(hour.permanentFailures)</td></tr>"
        }.joined()
        return "<div class=\"table-wrap\" tabindex=\"0\"><table><thead><tr><th scope=\"col\">Hour</th><th scope=\"col\">Delivered</th><th scope=\"col\">Deferred</th><th scope=\"col\">Bounced</th></tr></thead><tbody>\(rows)</tbody></table></div>"
    }

    /// `14:00` from `2026-12-01T14:00:00Z`.
    static func hourLabel(_ iso: String) -> String {
        guard let t = iso.firstIndex(of: "T") else { return iso }
        return String(iso[iso.index(after: t)...].prefix(5))
    }

    /// 1, 2, 5 × 10ⁿ at or above `value`.
    static func niceCeiling(_ value: Int) -> Int {
        var magnitude = 1
        while magnitude * 10 <= value { magnitude *= 10 }
        for step in [1, 2, 5, 10] where step * magnitude >= value {
            return step * magnitude
        }
        return 10 * magnitude
    }

    static func number(_ value: Double) -> String {
        String(Double(Int(value * 10)) / 10)
    }

    static func duration(seconds: Int) -> String {
        if seconds < 60 { return "\(seconds) s" }
        if seconds < 3600 { return "\(seconds / 60) min" }
        if seconds < 86400 { return "\(seconds / 3600) h \(seconds % 3600 / 60) min" }
        return "\(seconds / 86400) d \(seconds % 86400 / 3600) h"
    }
}

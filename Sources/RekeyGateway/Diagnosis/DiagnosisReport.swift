import RekeyAdminModel

/// The report a diagnosis answers with: the evidence in the API's terms, the verdict, and an
/// escalation block when the platform is at fault. Pure, like ``Verdict``.
enum DiagnosisReport {
    static func make(_ evidence: DiagnosisEvidence, now: Int64, reportID: String) -> Admin.Diagnosis {
        var report = Admin.Diagnosis(reportId: reportID, generatedAt: Admin.time(now) ?? "", input: evidence.input, since: Admin.time(evidence.since) ?? "")
        report.candidates = evidence.candidates
        if let user = evidence.user {
            let (matched, primary) = (evidence.matched, evidence.primary)
            report.who = .init(
                userId: user.id, name: user.name, role: user.role, state: user.state == .disabled ? "disabled" : "active",
                hasPassword: user.hasPassword, matchedAddress: matched.map { evidence.mask($0.address) }, matchedIsPrimary: matched?.primary,
                matchedVerified: matched?.verified, primaryAddress: primary.map { evidence.mask($0.address) } ?? "", primaryVerified: primary?.verified ?? false
            )
        }
        report.requests = evidence.events.map { event in
            .init(
                at: Admin.time(event.atUnixMs), kind: DiagnosisNames.kind(event.kind), purpose: DiagnosisNames.purpose(event.purpose),
                by: event.adminID.isEmpty ? "self" : event.adminID, clientAddress: event.clientAddress, tokenId: event.tokenID,
                detail: event.kind == .opened
                    ? DiagnosisNames.opening(event, deliveredAt: Verdict.deliveredAt(token: event.tokenID, evidence.messages))
                        + (event.tokenState.isEmpty || event.tokenState == "live" ? "" : "; the link was \(event.tokenState)")
                    : event.detail
            )
        }
        report.tokens = evidence.tokens.map { token in
            .init(
                tokenId: token.tokenID, purpose: DiagnosisNames.purpose(token.purpose), state: DiagnosisNames.state(token.state),
                issuedAt: Admin.time(token.issuedAtUnixMs), expiresAt: Admin.time(token.expiresAtUnixMs), usedAt: Admin.time(token.usedAtUnixMs),
                requestedFrom: token.clientAddress
            )
        }
        report.messages = evidence.messages.map { Admin.Message($0, mask: !evidence.canSeeAddresses) }
        if let suppression = evidence.suppression {
            report.suppression = "\(evidence.mask(suppression.address)) since \(Admin.time(suppression.createdAtUnixMs) ?? "?"): \(suppression.reason)"
        }
        report.platform.unreachable = evidence.unreachable
        if let queue = evidence.queue {
            report.platform.queueDepth = Int(queue.depth)
            report.platform.oldestQueuedAgeSeconds = Int(queue.oldestQueuedAgeMs / 1000)
            report.platform.lastAcceptedAt = Admin.time(queue.lastAcceptedAtUnixMs)
            report.platform.recentAccepted = Int(queue.recentAccepted)
            report.platform.recentTemporaryFailures = Int(queue.recentTemporaryFailures)
            report.platform.recentPermanentFailures = Int(queue.recentPermanentFailures)
            report.platform.transport = queue.transport
            report.platform.server = queue.server
            let domain = (evidence.primary?.address ?? evidence.input).split(separator: "@").last.map { String($0).lowercased() }
            if let domain, let figures = queue.recentByDomain.first(where: { $0.domain == domain }) {
                report.platform.recipientDomain = domain
                report.platform.recipientDomainAccepted = Int(figures.accepted)
                report.platform.recipientDomainFailures = Int(figures.temporaryFailures + figures.permanentFailures)
            }
        }
        report.findings = Verdict.findings(evidence, now: now)
        if report.findings.contains(where: { $0.code.hasPrefix("platform_") }) {
            report.escalation = Verdict.escalation(report)
        }
        return report
    }
}

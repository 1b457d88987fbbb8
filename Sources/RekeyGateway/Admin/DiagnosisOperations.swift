import RekeyAdminModel
import RekeyClock
import RekeyCrypto
import RekeyInput

/// `rekey diagnose`: why a user is not receiving the reset email — gathered from the three
/// services (``DiagnosisGathering``), judged by pure rules (``Verdict``), reported
/// (``DiagnosisReport``). Never a token, a password or a mail body.
package struct DiagnosisOperations: Sendable {
    let flows: Flows
    let clock: any WallClock

    init(flows: Flows, clock: any WallClock = SystemWallClock()) {
        self.flows = flows
        self.clock = clock
    }

    /// `input`: a user id, any of their addresses, or a name; `window`: how far back to look.
    package func diagnose(_ actor: AdminActor, input: String, window: Duration) async throws(AdminError) -> Admin.Diagnosis {
        let input = input.trimmingCharacters(in: .whitespaces)
        guard !input.isEmpty, input.count <= 254 else {
            throw AdminError.invalid("give the user: an id, an email address or a name")
        }
        return try await adminCall {
            let now = self.clock.nowMilliseconds()
            let evidence = try await DiagnosisGathering(backends: self.flows.backends).gather(
                input: input, since: now - window.milliseconds, canSeeAddresses: actor.canSeeAddresses, requestID: actor.requestID
            )
            return DiagnosisReport.make(evidence, now: now, reportID: try Hex.randomID(prefix: "dg_"))
        }
    }

    /// How far back a diagnosis looks: `30m`, `12h`, `7d`; from one minute to 90 days.
    package static func window(_ text: String) throws(OutOfBounds) -> Duration {
        try Bounded.duration(text, "since", in: Limits.diagnosisWindow)
    }
}

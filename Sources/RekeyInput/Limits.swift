/// Ranges that more than one program checks (the gateway and the CLI), kept in one place.
package enum Limits {
    /// How far back `rekey diagnose` and `GET /api/admin/v1/diagnosis` look: one minute to 90 days.
    package static let diagnosisWindow: ClosedRange<Duration> = .seconds(60) ... .seconds(90 * 86_400)
}

import RekeyDirectoryAPI
import RekeyNotifierAPI
import RekeyTokensAPI

/// What a diagnosis knows, as the three services told it: the input to the verdict
/// (``Verdict``) and to the report (``DiagnosisReport``). Built by ``DiagnosisGathering``, or
/// by hand in tests.
struct DiagnosisEvidence: Sendable {
    /// What the support engineer typed, trimmed: an id, an address or a name.
    var input: String
    /// The window's start (Unix ms).
    var since: Int64
    /// Whether addresses are shown in full (the caller has users.manage).
    var canSeeAddresses: Bool

    var user: Rekey_Directory_V1_User?
    /// The address the input matched (any of the user's).
    var matched: Rekey_Directory_V1_EmailIdentity?
    /// Users a name matched, when it matched more than one.
    var candidates: [String] = []
    var events: [Rekey_Tokens_V1_TokenEvent] = []
    var tokens: [Rekey_Tokens_V1_TokenInfo] = []
    var limits: [Rekey_Tokens_V1_RateLimit] = []
    var messages: [Rekey_Notifier_V1_Message] = []
    var suppression: Rekey_Notifier_V1_Suppression?
    var queue: Rekey_Notifier_V1_QueueStats?
    /// The notifier's sending-domain check (SPF, DKIM, DMARC); nil when it could not be had.
    var domainCheck: Rekey_Notifier_V1_CheckDomainResponse?
    /// Services that did not answer: "directory", "reset-token", "notifier".
    var unreachable: [String] = []

    init(input: String, since: Int64, canSeeAddresses: Bool) {
        self.input = input
        self.since = since
        self.canSeeAddresses = canSeeAddresses
    }

    /// Where reset mail goes.
    var primary: Rekey_Directory_V1_EmailIdentity? { self.user?.emails.first(where: \.primary) }

    /// An address as this caller may see it.
    func mask(_ address: String) -> String {
        self.canSeeAddresses ? address : Flows.mask(address)
    }
}

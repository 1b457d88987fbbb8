extension Admin {
    /// `GET diagnosis?user=`: why a user is not receiving the reset email (docs/diagnose.md).
    /// Stable for scripts: fields are only ever added.
    package struct Diagnosis: Codable, Sendable, Equatable {
        package struct Who: Codable, Sendable, Equatable {
            package var userId: String
            package var name: String
            package var role: String
            package var state: String
            package var hasPassword: Bool
            /// The address the input matched, and how.
            package var matchedAddress: String?
            package var matchedIsPrimary: Bool?
            package var matchedVerified: Bool?
            /// Where reset mail goes (masked unless the caller has users.manage).
            package var primaryAddress: String
            package var primaryVerified: Bool

            package init(
                userId: String, name: String, role: String, state: String, hasPassword: Bool, matchedAddress: String?, matchedIsPrimary: Bool?,
                matchedVerified: Bool?, primaryAddress: String, primaryVerified: Bool
            ) {
                self.userId = userId
                self.name = name
                self.role = role
                self.state = state
                self.hasPassword = hasPassword
                self.matchedAddress = matchedAddress
                self.matchedIsPrimary = matchedIsPrimary
                self.matchedVerified = matchedVerified
                self.primaryAddress = primaryAddress
                self.primaryVerified = primaryVerified
            }
        }

        /// A reset or verification request, or its refusal, from the reset-token service's history.
        package struct Request: Codable, Sendable, Equatable {
            package var at: String?
            package var kind: String
            package var purpose: String
            /// "self" or the admin's user id.
            package var by: String
            package var clientAddress: String
            package var tokenId: String
            package var detail: String

            package init(at: String?, kind: String, purpose: String, by: String, clientAddress: String, tokenId: String, detail: String) {
                self.at = at
                self.kind = kind
                self.purpose = purpose
                self.by = by
                self.clientAddress = clientAddress
                self.tokenId = tokenId
                self.detail = detail
            }
        }

        package struct Token: Codable, Sendable, Equatable {
            package var tokenId: String
            package var purpose: String
            package var state: String
            package var issuedAt: String?
            package var expiresAt: String?
            package var usedAt: String?
            package var requestedFrom: String

            package init(tokenId: String, purpose: String, state: String, issuedAt: String?, expiresAt: String?, usedAt: String?, requestedFrom: String) {
                self.tokenId = tokenId
                self.purpose = purpose
                self.state = state
                self.issuedAt = issuedAt
                self.expiresAt = expiresAt
                self.usedAt = usedAt
                self.requestedFrom = requestedFrom
            }
        }

        package struct Platform: Codable, Sendable, Equatable {
            package var queueDepth: Int?
            package var oldestQueuedAgeSeconds: Int?
            package var lastAcceptedAt: String?
            package var recentAccepted: Int?
            package var recentTemporaryFailures: Int?
            package var recentPermanentFailures: Int?
            package var recipientDomain: String?
            package var recipientDomainAccepted: Int?
            package var recipientDomainFailures: Int?
            package var transport: String?
            package var server: String?
            /// Services that did not answer.
            package var unreachable: [String]

            package init(unreachable: [String] = []) {
                self.unreachable = unreachable
            }
        }

        package struct Finding: Codable, Sendable, Equatable {
            /// A stable code: delivered, never_requested, secondary_address, unknown_address, …
            package var code: String
            package var summary: String
            package var nextStep: String
            package var evidence: [String]

            package init(code: String, summary: String, nextStep: String, evidence: [String]) {
                self.code = code
                self.summary = summary
                self.nextStep = nextStep
                self.evidence = evidence
            }
        }

        package var reportId: String
        package var generatedAt: String
        package var input: String
        package var since: String
        package var who: Who?
        package var candidates: [String]
        package var requests: [Request]
        package var tokens: [Token]
        package var messages: [Message]
        package var suppression: String?
        package var platform: Platform
        /// Most likely first.
        package var findings: [Finding]
        /// A block to paste into a ticket when the platform is at fault.
        package var escalation: String?

        package init(reportId: String, generatedAt: String, input: String, since: String) {
            self.reportId = reportId
            self.generatedAt = generatedAt
            self.input = input
            self.since = since
            self.who = nil
            self.candidates = []
            self.requests = []
            self.tokens = []
            self.messages = []
            self.suppression = nil
            self.platform = Platform()
            self.findings = []
            self.escalation = nil
        }
    }
}

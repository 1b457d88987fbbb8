extension Admin {
    /// What sending a reset, verification or test email did.
    package struct SentMail: Codable, Sendable, Equatable {
        package var messageId: String
        /// Masked for reset and verification mail: `j***@example.com`.
        package var sentTo: String
        /// `queued`, `suppressed` (nothing sent: the address bounced before) or `duplicate`.
        package var status: String

        package init(messageId: String, sentTo: String, status: String) {
            self.messageId = messageId
            self.sentTo = sentTo
            self.status = status
        }
    }

    /// `GET mail/domain-check`: what receivers will make of our mail (SPF, DKIM, DMARC, MX, the
    /// templates), each finding with what to publish or set.
    package struct DomainCheck: Codable, Sendable, Equatable {
        package struct Finding: Codable, Sendable, Equatable {
            /// `spf`, `dkim`, `dmarc`, `mx`, `template` or `link`.
            package var check: String
            /// `ok`, `warning` or `problem`.
            package var status: String
            package var summary: String
            /// What to publish or set; empty when nothing needs doing.
            package var fix: String
            /// The record as found; empty when there was none.
            package var evidence: String

            package init(check: String, status: String, summary: String, fix: String = "", evidence: String = "") {
                self.check = check
                self.status = status
                self.summary = summary
                self.fix = fix
                self.evidence = evidence
            }
        }

        package var fromDomain: String
        package var envelopeDomain: String
        /// Empty when mail is not DKIM-signed.
        package var dkimDomain: String
        package var dnsServer: String
        package var checkedAt: String?
        package var findings: [Finding]

        package init(fromDomain: String, envelopeDomain: String, dkimDomain: String, dnsServer: String, checkedAt: String?, findings: [Finding]) {
            self.fromDomain = fromDomain
            self.envelopeDomain = envelopeDomain
            self.dkimDomain = dkimDomain
            self.dnsServer = dnsServer
            self.checkedAt = checkedAt
            self.findings = findings
        }
    }

    /// `POST users/{id}/verification`: which address to verify; the primary when absent.
    package struct VerificationRequest: Codable, Sendable, Equatable {
        package var emailId: String?

        package init(emailId: String? = nil) {
            self.emailId = emailId
        }
    }

    /// `POST mail/test`.
    package struct MailTest: Codable, Sendable, Equatable {
        package var address: String

        package init(address: String) {
            self.address = address
        }
    }

    /// One delivery attempt of a message.
    package struct Attempt: Codable, Sendable, Equatable {
        package var startedAt: String?
        package var finishedAt: String?
        package var transport: String
        package var server: String
        /// `accepted`, `temporary_failure`, `permanent_failure`, `interrupted` or `in_progress`.
        package var outcome: String
        package var stage: String
        package var replyCode: Int
        package var enhancedStatus: String
        package var replyText: String
        package var remoteQueueId: String
        package var error: String

        package init(
            startedAt: String?, finishedAt: String?, transport: String, server: String, outcome: String, stage: String, replyCode: Int,
            enhancedStatus: String, replyText: String, remoteQueueId: String, error: String
        ) {
            self.startedAt = startedAt
            self.finishedAt = finishedAt
            self.transport = transport
            self.server = server
            self.outcome = outcome
            self.stage = stage
            self.replyCode = replyCode
            self.enhancedStatus = enhancedStatus
            self.replyText = replyText
            self.remoteQueueId = remoteQueueId
            self.error = error
        }
    }

    /// A message the notifier was asked to send, with its timeline.
    package struct Message: Codable, Sendable, Equatable {
        package var id: String
        package var template: String
        /// Masked unless the caller has users.manage.
        package var to: String
        /// `queued`, `deferred`, `accepted`, `failed`, `suppressed` or `bounced` (accepted, then
        /// a bounce came back: see `reports`).
        package var state: String
        package var subject: String
        package var messageIdHeader: String
        package var createdAt: String?
        package var nextAttemptAt: String?
        package var reason: String
        package var requestedBy: String
        package var attempts: [Attempt]
        /// The reset or verification token whose link the message carries (never the link).
        package var tokenId: String?
        /// Bounces and complaints received after delivery, oldest first.
        package var reports: [Report] = []

        package init(
            id: String, template: String, to: String, state: String, subject: String, messageIdHeader: String, createdAt: String?,
            nextAttemptAt: String?, reason: String, requestedBy: String, attempts: [Attempt], tokenId: String? = nil
        ) {
            self.tokenId = tokenId
            self.id = id
            self.template = template
            self.to = to
            self.state = state
            self.subject = subject
            self.messageIdHeader = messageIdHeader
            self.createdAt = createdAt
            self.nextAttemptAt = nextAttemptAt
            self.reason = reason
            self.requestedBy = requestedBy
            self.attempts = attempts
        }
    }

    /// A bounce (DSN) or complaint (ARF) about a message, received after delivery.
    package struct Report: Codable, Sendable, Equatable {
        package var receivedAt: String?
        /// `dsn` or `complaint`.
        package var kind: String
        /// DSN: `failed`, `delayed`, `delivered`, `relayed` or `expanded`.
        package var action: String
        package var status: String
        /// The remote server's words.
        package var diagnosticCode: String
        package var remoteMta: String
        /// Masked like the message's recipient.
        package var recipient: String
        /// Complaint: `abuse`, `fraud`, `virus`, `other`, `not-spam`.
        package var feedbackType: String
        package var reporter: String

        package init(
            receivedAt: String?, kind: String, action: String, status: String, diagnosticCode: String, remoteMta: String, recipient: String,
            feedbackType: String, reporter: String
        ) {
            self.receivedAt = receivedAt
            self.kind = kind
            self.action = action
            self.status = status
            self.diagnosticCode = diagnosticCode
            self.remoteMta = remoteMta
            self.recipient = recipient
            self.feedbackType = feedbackType
            self.reporter = reporter
        }
    }

    package struct MessagesPage: Codable, Sendable, Equatable {
        package var messages: [Message]
        package var nextPageToken: String

        package init(messages: [Message], nextPageToken: String) {
            self.messages = messages
            self.nextPageToken = nextPageToken
        }
    }

    /// An address nothing is sent to, because its server refused it for good.
    package struct Suppression: Codable, Sendable, Equatable {
        package var address: String
        package var reason: String
        package var createdAt: String?
        package var messageId: String

        package init(address: String, reason: String, createdAt: String?, messageId: String) {
            self.address = address
            self.reason = reason
            self.createdAt = createdAt
            self.messageId = messageId
        }
    }

    package struct SuppressionsPage: Codable, Sendable, Equatable {
        package var suppressions: [Suppression]
        package var nextPageToken: String

        package init(suppressions: [Suppression], nextPageToken: String) {
            self.suppressions = suppressions
            self.nextPageToken = nextPageToken
        }
    }
}

extension Admin {
    /// The outbox and recent deliveries, for the mail health page.
    package struct MailHealth: Codable, Sendable, Equatable {
        package struct Figures: Codable, Sendable, Equatable {
            /// A recipient domain, or the start of an hour.
            package var key: String
            package var accepted: Int
            package var temporaryFailures: Int
            package var permanentFailures: Int

            package init(key: String, accepted: Int, temporaryFailures: Int, permanentFailures: Int) {
                self.key = key
                self.accepted = accepted
                self.temporaryFailures = temporaryFailures
                self.permanentFailures = permanentFailures
            }
        }

        package var queueDepth: Int
        package var oldestQueuedAgeSeconds: Int
        package var lastAcceptedAt: String?
        package var lastAttemptAt: String?
        package var transport: String
        package var server: String
        /// The last hour, overall and by recipient domain (most failures first).
        package var lastHour: Figures
        package var lastHourByDomain: [Figures]
        /// Oldest first; the last is the hour now running. Keys are the hours' starts.
        package var hourly: [Figures]

        package init(
            queueDepth: Int, oldestQueuedAgeSeconds: Int, lastAcceptedAt: String?, lastAttemptAt: String?, transport: String, server: String,
            lastHour: Figures, lastHourByDomain: [Figures], hourly: [Figures]
        ) {
            self.queueDepth = queueDepth
            self.oldestQueuedAgeSeconds = oldestQueuedAgeSeconds
            self.lastAcceptedAt = lastAcceptedAt
            self.lastAttemptAt = lastAttemptAt
            self.transport = transport
            self.server = server
            self.lastHour = lastHour
            self.lastHourByDomain = lastHourByDomain
            self.hourly = hourly
        }
    }
}

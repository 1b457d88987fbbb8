extension Admin {
    /// An API key; `key` itself only in the answer that made it.
    package struct APIKey: Codable, Sendable, Equatable {
        package var id: String
        package var userId: String
        package var name: String
        package var expiresAt: String?
        /// Shown once, when the key is made.
        package var key: String?

        package init(id: String, userId: String, name: String, expiresAt: String?, key: String?) {
            self.id = id
            self.userId = userId
            self.name = name
            self.expiresAt = expiresAt
            self.key = key
        }
    }

    /// `POST users/{id}/api-keys` (for oneself): a name and a lifetime (0 or absent: the default).
    package struct NewAPIKey: Codable, Sendable, Equatable {
        package var name: String
        package var lifetimeDays: Int?

        package init(name: String, lifetimeDays: Int? = nil) {
            self.name = name
            self.lifetimeDays = lifetimeDays
        }
    }

    /// `POST api-keys`: a staff member's first key, made with their email address and password.
    package struct PasswordAPIKey: Codable, Sendable, Equatable {
        package var email: String
        package var password: String
        package var name: String
        package var lifetimeDays: Int?

        package init(email: String, password: String, name: String, lifetimeDays: Int? = nil) {
            self.email = email
            self.password = password
            self.name = name
            self.lifetimeDays = lifetimeDays
        }
    }

    /// One admin action or refusal from the directory's audit trail.
    package struct AuditRecord: Codable, Sendable, Equatable {
        package var id: Int64
        package var at: String?
        package var actorUserId: String
        package var actorClientAddress: String
        package var action: String
        package var target: String
        package var detail: String

        package init(id: Int64, at: String?, actorUserId: String, actorClientAddress: String, action: String, target: String, detail: String) {
            self.id = id
            self.at = at
            self.actorUserId = actorUserId
            self.actorClientAddress = actorClientAddress
            self.action = action
            self.target = target
            self.detail = detail
        }
    }

    package struct AuditPage: Codable, Sendable, Equatable {
        package var records: [AuditRecord]
        package var nextPageToken: String

        package init(records: [AuditRecord], nextPageToken: String) {
            self.records = records
            self.nextPageToken = nextPageToken
        }
    }
}

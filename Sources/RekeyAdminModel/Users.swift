extension Admin {
    /// One of a user's email addresses.
    package struct Email: Codable, Sendable, Equatable {
        package var id: String
        package var address: String
        package var primary: Bool
        package var verified: Bool

        package init(id: String, address: String, primary: Bool, verified: Bool) {
            self.id = id
            self.address = address
            self.primary = primary
            self.verified = verified
        }
    }

    package struct User: Codable, Sendable, Equatable {
        package var id: String
        package var name: String
        package var role: String
        package var staff: Bool
        package var organizationId: String?
        /// `active` or `disabled`.
        package var state: String
        package var locale: String
        package var emails: [Email]
        package var hasPassword: Bool
        package var passwordChangedAt: String?
        package var createdAt: String?
        package var updatedAt: String?
        /// What the admin should know after a create or an added address (look-alike addresses).
        package var warnings: [String]?

        package init(
            id: String, name: String, role: String, staff: Bool, organizationId: String?, state: String, locale: String, emails: [Email],
            hasPassword: Bool, passwordChangedAt: String?, createdAt: String?, updatedAt: String?, warnings: [String]?
        ) {
            self.id = id
            self.name = name
            self.role = role
            self.staff = staff
            self.organizationId = organizationId
            self.state = state
            self.locale = locale
            self.emails = emails
            self.hasPassword = hasPassword
            self.passwordChangedAt = passwordChangedAt
            self.createdAt = createdAt
            self.updatedAt = updatedAt
            self.warnings = warnings
        }

        /// The address reset mail goes to.
        package var primaryEmail: Email? { self.emails.first(where: \.primary) }
    }

    package struct UsersPage: Codable, Sendable, Equatable {
        package var users: [User]
        /// Empty on the last page.
        package var nextPageToken: String
        /// How many users match over all pages, when it was asked for (counted up to 10,000).
        package var total: Int?
        /// The count stopped: at least `total` users match.
        package var totalCapped: Bool?

        package init(users: [User], nextPageToken: String, total: Int? = nil, totalCapped: Bool? = nil) {
            self.users = users
            self.nextPageToken = nextPageToken
            self.total = total
            self.totalCapped = totalCapped
        }
    }

    /// `GET users/lookup?email=`: the user and which of their addresses matched.
    package struct Lookup: Codable, Sendable, Equatable {
        package var user: User
        package var matched: Email

        package init(user: User, matched: Email) {
            self.user = user
            self.matched = matched
        }
    }

    /// `POST users`.
    package struct NewUser: Codable, Sendable, Equatable {
        package var name: String
        package var email: String
        package var role: String
        package var organizationId: String?
        package var locale: String?

        package init(name: String, email: String, role: String, organizationId: String? = nil, locale: String? = nil) {
            self.name = name
            self.email = email
            self.role = role
            self.organizationId = organizationId
            self.locale = locale
        }
    }

    /// `PATCH users/{id}`: only the fields given change.
    package struct UserChanges: Codable, Sendable, Equatable {
        package var name: String?
        package var role: String?
        /// `""` removes the user from their organization.
        package var organizationId: String?
        package var locale: String?

        package init(name: String? = nil, role: String? = nil, organizationId: String? = nil, locale: String? = nil) {
            self.name = name
            self.role = role
            self.organizationId = organizationId
            self.locale = locale
        }

        package var isEmpty: Bool { self.name == nil && self.role == nil && self.organizationId == nil && self.locale == nil }
    }

    /// `POST users/{id}/emails`.
    package struct NewEmail: Codable, Sendable, Equatable {
        package var address: String
        package var verified: Bool?

        package init(address: String, verified: Bool? = nil) {
            self.address = address
            self.verified = verified
        }
    }

    /// `POST users/import`: what a CSV import did.
    package struct ImportReport: Codable, Sendable, Equatable {
        package struct Row: Codable, Sendable, Equatable {
            package var line: Int
            package var email: String
            package var userId: String
            package var error: String?

            package init(line: Int, email: String, userId: String, error: String?) {
                self.line = line
                self.email = email
                self.userId = userId
                self.error = error
            }
        }

        package var committed: Bool
        package var created: Int
        package var refused: Int
        /// Every row for files of up to 1,000 rows; else the first 1,000 refused rows.
        package var rows: [Row]
        /// Rows left out of `rows`.
        package var rowsOmitted: Int

        package init(committed: Bool, created: Int, refused: Int, rows: [Row], rowsOmitted: Int) {
            self.committed = committed
            self.created = created
            self.refused = refused
            self.rows = rows
            self.rowsOmitted = rowsOmitted
        }
    }
}

extension Admin {
    package struct Organization: Codable, Sendable, Equatable {
        package var id: String
        package var name: String
        package var domains: [String]
        package var createdAt: String?

        package init(id: String, name: String, domains: [String], createdAt: String?) {
            self.id = id
            self.name = name
            self.domains = domains
            self.createdAt = createdAt
        }
    }

    package struct Organizations: Codable, Sendable, Equatable {
        package var organizations: [Organization]

        package init(organizations: [Organization]) {
            self.organizations = organizations
        }
    }

    /// `POST organizations`.
    package struct NewOrganization: Codable, Sendable, Equatable {
        package var name: String
        package var domains: [String]?

        package init(name: String, domains: [String]? = nil) {
            self.name = name
            self.domains = domains
        }
    }

    /// `PATCH organizations/{id}`: only the fields given change; `domains` replaces them all.
    package struct OrganizationChanges: Codable, Sendable, Equatable {
        package var name: String?
        package var domains: [String]?

        package init(name: String? = nil, domains: [String]? = nil) {
            self.name = name
            self.domains = domains
        }
    }

    /// `DELETE organizations/{id}`.
    package struct Deleted: Codable, Sendable, Equatable {
        package var deleted: String

        package init(deleted: String) {
            self.deleted = deleted
        }
    }
}

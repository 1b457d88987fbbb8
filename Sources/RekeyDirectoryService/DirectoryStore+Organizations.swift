import RekeyCrypto
import RekeySQLite

/// Organizations and their email domains.
extension DirectoryStore {
    package func createOrganization(name: String, domains: [String], actor: ActorInfo, in connection: any SQLConnection) throws -> OrganizationRecord {
        let name = try DirectoryValidation.name(name, field: "name")
        let domains = try Self.validDomains(domains)
        return try connection.transaction { connection in
            if try connection.queryFirst("SELECT id FROM organizations WHERE name_key = ?", .text(name.lowercased())) != nil {
                throw DirectoryError.alreadyExists("an organization named \(name) exists already (name)")
            }
            let record = OrganizationRecord(id: try Self.makeID("o_"), name: name, domains: domains, createdAt: self.clock.nowMilliseconds())
            try connection.run(
                "INSERT INTO organizations (id, name, name_key, domains, created_at) VALUES (?, ?, ?, ?, ?)",
                .text(record.id), .text(name), .text(name.lowercased()), .text(domains.joined(separator: ",")), .integer(record.createdAt)
            )
            try self.audit(actor, "organization.create", target: record.id, detail: name, in: connection)
            return record
        }
    }

    package func organization(_ id: String, in connection: any SQLConnection) throws -> OrganizationRecord {
        try DirectoryValidation.id(id, prefix: "o_", field: "organization_id")
        guard let row = try connection.queryFirst("SELECT * FROM organizations WHERE id = ?", .text(id)) else {
            throw DirectoryError.notFound("no organization has the id \(id)")
        }
        return Self.organizationRecord(row)
    }

    package func organizations(in connection: any SQLConnection) throws -> [OrganizationRecord] {
        // SQLite's NOCASE folds ASCII letters only; lower() on PostgreSQL folds more, and the name breaks ties.
        try connection.query(
            connection.dialect == .sqlite ? "SELECT * FROM organizations ORDER BY name COLLATE NOCASE" : "SELECT * FROM organizations ORDER BY lower(name), name"
        ).map(Self.organizationRecord)
    }

    /// Renames an organization and/or replaces its domains (nil leaves that part alone).
    package func updateOrganization(_ id: String, name: String?, domains: [String]?, actor: ActorInfo, in connection: any SQLConnection) throws -> OrganizationRecord {
        let name = try name.map { try DirectoryValidation.name($0, field: "name") }
        let domains = try domains.map(Self.validDomains)
        return try connection.transaction { connection in
            let organization = try self.organization(id, in: connection)
            var changed: [String] = []
            if let name, name != organization.name {
                if let other = try connection.queryFirst("SELECT id FROM organizations WHERE name_key = ?", .text(name.lowercased()))?.string("id"), other != id {
                    throw DirectoryError.alreadyExists("an organization named \(name) exists already (name)")
                }
                try connection.run("UPDATE organizations SET name = ?, name_key = ? WHERE id = ?", .text(name), .text(name.lowercased()), .text(id))
                changed.append("name \(organization.name) → \(name)")
            }
            if let domains, domains != organization.domains {
                try connection.run("UPDATE organizations SET domains = ? WHERE id = ?", .text(domains.joined(separator: ",")), .text(id))
                changed.append("domains \(domains.joined(separator: ","))")
            }
            if !changed.isEmpty {
                try self.audit(actor, "organization.update", target: id, detail: changed.joined(separator: ", "), in: connection)
            }
            return try self.organization(id, in: connection)
        }
    }

    /// Deletes an organization nobody belongs to any more.
    package func deleteOrganization(_ id: String, actor: ActorInfo, in connection: any SQLConnection) throws {
        try connection.transaction { connection in
            let organization = try self.organization(id, in: connection)
            let members = try connection.queryFirst("SELECT count(*) AS n FROM users WHERE organization_id = ?", .text(id))?.int("n") ?? 0
            guard members == 0 else {
                throw DirectoryError.failedPrecondition(
                    "\(members) user\(members == 1 ? "" : "s") still belong to \(organization.name); move them to another organization first"
                )
            }
            try connection.run("DELETE FROM organizations WHERE id = ?", .text(id))
            try self.audit(actor, "organization.delete", target: id, detail: organization.name, in: connection)
        }
    }

    static func validDomains(_ domains: [String]) throws -> [String] {
        guard domains.count <= 50 else {
            throw DirectoryError.invalidArgument("an organization can have at most 50 domains")
        }
        return try domains.map { domain -> String in
            let lowered = domain.trimmed.lowercased()
            guard DirectoryValidation.isHostname(lowered), lowered.contains(".") else {
                throw DirectoryError.invalidArgument("domain `\(domain.prefix(80))` is not a domain name such as example.com")
            }
            return lowered
        }
    }
}

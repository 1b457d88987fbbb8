import RekeyCrypto
import RekeySQLite

extension DirectoryStore {
    /// The outcome of one data row of an import.
    package struct ImportRow: Sendable, Hashable {
        package var line: Int
        package var email: String
        /// The new user's id; empty when the row was refused or nothing was written.
        package var userID: String
        /// Why the row was refused; nil for a good row.
        package var error: String?
    }

    package struct ImportReport: Sendable, Hashable {
        /// Whether anything was written.
        package var committed: Bool
        package var rows: [ImportRow]

        package var created: Int { self.committed ? self.rows.filter { $0.error == nil }.count : 0 }
        package var refused: Int { self.rows.filter { $0.error != nil }.count }
    }

    /// The columns of an import file, in this order; `organization` may be left out.
    package static let importColumns = ["name", "email", "role", "organization"]

    private struct ImportRejected: Error {
        var report: ImportReport
    }

    /// Creates users from CSV with the header `name,email,role,organization`. All-or-nothing
    /// unless `partial`: then good rows are created and the others reported. The organization is
    /// a name (any case) or an id. Imported users are active, without a password, their address
    /// unverified. Throws INVALID_ARGUMENT only for a file that cannot be read at all (no header,
    /// unknown columns, too many rows).
    package func importUsers(
        csv: [UInt8],
        partial: Bool,
        maxRows: Int = 100_000,
        actor: ActorInfo,
        in connection: any SQLConnection
    ) throws -> ImportReport {
        var records = CSVReader.records(csv)[...]
        guard let header = records.popFirst() else {
            throw DirectoryError.invalidArgument("the file is empty; the first line must be the header name,email,role,organization")
        }
        let columns = header.fields.map { $0.trimmed.lowercased() }
        guard header.error == nil, columns == Self.importColumns || columns == Array(Self.importColumns.prefix(3)) else {
            let found = header.error ?? "it is `\(header.fields.joined(separator: ",").prefix(120))`"
            throw DirectoryError.invalidArgument("the first line must be the header name,email,role,organization; \(found)")
        }
        guard records.count <= maxRows else {
            throw DirectoryError.outOfRange("the file has \(records.count) rows; at most \(maxRows) at once")
        }
        do {
            return try connection.transaction { connection in
                let acting = try self.actingUser(actor, in: connection)
                var report = ImportReport(committed: true, rows: [])
                report.rows.reserveCapacity(records.count)
                var roles: [String: RoleRecord?] = [:]
                var organizations: [String: String?] = [:]
                var seen: [String: Int] = [:]
                var created = 0
                var prefixes: [PrefixRow] = []
                var refused = 0
                let now = self.clock.nowMilliseconds()
                for record in records {
                    var row = ImportRow(line: record.line, email: "", userID: "", error: nil)
                    do {
                        if let error = record.error {
                            throw DirectoryError.invalidArgument(error)
                        }
                        guard record.fields.count == columns.count else {
                            throw DirectoryError.invalidArgument(
                                "line \(record.line) has \(record.fields.count) columns; expected \(columns.count) (\(columns.joined(separator: ",")))"
                            )
                        }
                        row.email = record.fields[1].trimmed
                        let name = try DirectoryValidation.name(record.fields[0], field: "name")
                        let email = try DirectoryValidation.email(record.fields[1])
                        let role = record.fields[2].trimmed.lowercased()
                        if roles[role] == nil {
                            roles[role] = .some(try? self.role(named: role, in: connection))
                        }
                        guard let roleRecord = roles[role] ?? nil else {
                            throw DirectoryError.invalidArgument("unknown role `\(role.prefix(80))`")
                        }
                        try Self.checkGrant(roleRecord, by: acting, to: nil)
                        var organizationID: String?
                        let organization = columns.count == 4 ? record.fields[3].trimmed : ""
                        if !organization.isEmpty {
                            if organizations[organization] == nil {
                                organizations[organization] = try self.organizationID(named: organization, in: connection)
                            }
                            guard let id = organizations[organization] ?? nil else {
                                throw DirectoryError.invalidArgument("no organization is named or has the id `\(organization.prefix(80))`; create it first")
                            }
                            organizationID = id
                        }
                        if let first = seen[email.normalized] {
                            throw DirectoryError.alreadyExists("the email address \(email.normalized) is also on line \(first) of this file")
                        }
                        seen[email.normalized] = record.line
                        try self.ensureEmailIsFree(email.normalized, field: "email", in: connection)
                        if partial || refused == 0 {
                            let inserted = try self.insertImported(
                                name: name, email: email, role: role, staff: roleRecord.staff, organizationID: organizationID, now: now, in: connection
                            )
                            row.userID = inserted.id
                            prefixes += inserted.prefixes
                            created += 1
                        }
                    } catch let error as DirectoryError {
                        row.error = error.rpcError.message
                        refused += 1
                    }
                    report.rows.append(row)
                }
                if !partial && refused > 0 {
                    report.committed = false
                    for index in report.rows.indices { report.rows[index].userID = "" }
                    throw ImportRejected(report: report)
                }
                // In key order: inserting a b-tree's rows sorted touches each page once.
                prefixes.sort()
                try self.insert(prefixes, in: connection)
                report.committed = created > 0
                if created > 0 {
                    try self.audit(actor, "user.import", target: "", detail: "\(created) users, \(refused) rows refused", in: connection)
                }
                return report
            }
        } catch let rejected as ImportRejected {
            return rejected.report
        }
    }

    private func insertImported(
        name: String,
        email: (address: String, normalized: String),
        role: String,
        staff: Bool,
        organizationID: String?,
        now: Int64,
        in connection: any SQLConnection
    ) throws -> (id: String, prefixes: [PrefixRow]) {
        let id = try Self.makeID("u_")
        guard let seq = try connection.queryFirst(
            "INSERT INTO users (id, name, role, organization_id, state, locale, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'en', ?, ?) RETURNING seq",
            .text(id), .text(name), .text(role), organizationID.map(SQLiteValue.text) ?? .null,
            .integer(UserStateValue.active.rawValue), .integer(now), .integer(now)
        )?.int("seq") else {
            throw DirectoryError.failedPrecondition("the user could not be stored")
        }
        try connection.run(
            "INSERT INTO emails (id, user_id, address, normalized, is_primary, verified, created_at, skeleton) VALUES (?, ?, ?, ?, 1, 0, ?, ?)",
            .text(try Self.makeID("e_")), .text(id), .text(email.address), .text(email.normalized), .integer(now),
            .text(LookAlike.skeleton(email.normalized))
        )
        try self.insertFullTextEntry(seq: seq, name: name, emails: [email.address], in: connection)
        return (id, Self.prefixRows(seq: seq, name: name, emails: [email.address], staff: staff))
    }

    /// The id of the organization with this id, or with this name in any case.
    private func organizationID(named nameOrID: String, in connection: any SQLConnection) throws -> String? {
        try connection.queryFirst(
            "SELECT id FROM organizations WHERE id = ? OR name_key = ?", .text(nameOrID), .text(nameOrID.lowercased())
        )?.string("id")
    }
}

import Foundation

import RekeyCrypto
import RekeySQLite

/// The audit trail: every change and every refused attempt, read newest first.
extension DirectoryStore {
    /// Audit records, newest first, optionally of one target.
    package func auditRecords(target: String, pageSize: Int, pageToken: String, in connection: SQLiteConnection) throws -> (records: [AuditRecord], next: String) {
        guard (1...500).contains(pageSize) else {
            throw DirectoryError.invalidArgument("page_size must be from 1 to 500 (0 for 50)")
        }
        var before = Int64.max
        if !pageToken.isEmpty {
            guard let value = PageToken.position(pageToken, kind: "a1") else {
                throw DirectoryError.invalidArgument("page_token is not one this service gave out")
            }
            before = value
        }
        let rows = try target.isEmpty
            ? connection.query("SELECT * FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?", .integer(before), .integer(Int64(pageSize + 1)))
            : connection.query(
                "SELECT * FROM audit WHERE target = ? AND id < ? ORDER BY id DESC LIMIT ?", .text(target), .integer(before), .integer(Int64(pageSize + 1))
            )
        let records = rows.prefix(pageSize).map { row in
            AuditRecord(
                id: row.int("id") ?? 0, at: row.int("at") ?? 0, actorUserID: row.string("actor_id") ?? "",
                actorClientAddress: row.string("actor_address") ?? "", action: row.string("action") ?? "",
                target: row.string("target") ?? "", detail: row.string("detail") ?? ""
            )
        }
        let next = rows.count > pageSize ? PageToken.encode("a1", records[pageSize - 1].id) : ""
        return (records, next)
    }
}

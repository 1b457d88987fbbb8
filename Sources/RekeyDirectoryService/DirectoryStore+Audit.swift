import RekeyCrypto
import RekeySQLite

/// The audit trail: every change and every refused attempt, read newest first.
extension DirectoryStore {
    /// Audit records, newest first, optionally of one target and of one actor.
    package func auditRecords(
        target: String, actor: String = "", pageSize: Int, pageToken: String, in connection: any SQLConnection
    ) throws -> (records: [AuditRecord], next: String) {
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
        guard target.utf8.count <= 64, actor.utf8.count <= 64 else {
            throw DirectoryError.invalidArgument("target and actor_user_id are ids of at most 64 bytes")
        }
        var sql = "SELECT * FROM audit WHERE id < ?"
        var bindings: [SQLiteValue] = [.integer(before)]
        if !target.isEmpty {
            sql += " AND target = ?"
            bindings.append(.text(target))
        }
        if !actor.isEmpty {
            sql += " AND actor_id = ?"
            bindings.append(.text(actor))
        }
        let rows = try connection.query(sql + " ORDER BY id DESC LIMIT ?", bindings + [.integer(Int64(pageSize + 1))])
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

import RekeySQLite

/// Imports larger than one RPC frame: the file arrives in chunks into a stage, then one commit
/// imports it all-or-nothing (``importUsers(csv:partial:maxRows:actor:in:)``) and keeps the outcome,
/// so that a caller who lost the answer can ask again with its import key and get that outcome.
extension DirectoryStore {
    /// The most bytes a staged file may have.
    package static let maxImportBytes = 8 << 20
    /// The most bytes one chunk may have.
    package static let maxImportChunk = 1 << 20
    /// Stages not committed within this are forgotten.
    package static let importStageLifetime: Int64 = 3_600_000

    package enum ImportStage: Sendable, Hashable {
        /// A new stage (or one still being filled) to append to.
        case staging(id: String)
        /// The key named an import that finished: its outcome, encoded as the RPC answer.
        case finished(id: String, outcome: [UInt8])
    }

    /// Starts a stage, or finds the one `key` names.
    package func beginImport(key: String, partial: Bool, actor: ActorInfo, in connection: any SQLConnection) throws -> ImportStage {
        if !key.isEmpty {
            guard key.utf8.count <= 128, key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw DirectoryError.invalidArgument("import_key must be 1-128 printable ASCII characters without spaces")
            }
        }
        return try connection.transaction { connection in
            let now = self.clock.nowMilliseconds()
            // Abandoned stages go; finished imports stay (their keys answer retries) for a day.
            try connection.run(
                "DELETE FROM import_chunks WHERE import_id IN (SELECT id FROM imports WHERE state = 'staging' AND created_at < ?)",
                .integer(now - Self.importStageLifetime)
            )
            try connection.run(
                "DELETE FROM imports WHERE (state = 'staging' AND created_at < ?) OR created_at < ?",
                .integer(now - Self.importStageLifetime), .integer(now - 24 * Self.importStageLifetime)
            )
            if !key.isEmpty, let row = try connection.queryFirst("SELECT id, state, outcome FROM imports WHERE import_key = ?", .text(key)),
               let id = row.string("id") {
                if row.string("state") == "finished", case .blob(let outcome) = row["outcome"] {
                    return .finished(id: id, outcome: outcome)
                }
                // A retry of an import that never committed sends the whole file again.
                try connection.run("DELETE FROM import_chunks WHERE import_id = ?", .text(id))
                try connection.run("UPDATE imports SET bytes = 0, partial = ? WHERE id = ?", .integer(partial ? 1 : 0), .text(id))
                return .staging(id: id)
            }
            let id = try Self.makeID("i_")
            try connection.run(
                "INSERT INTO imports (id, import_key, partial, actor_id, actor_address, state, created_at, bytes) VALUES (?, ?, ?, ?, ?, 'staging', ?, 0)",
                .text(id), key.isEmpty ? .null : .text(key), .integer(partial ? 1 : 0), .text(actor.userID), .text(actor.clientAddress), .integer(now)
            )
            return .staging(id: id)
        }
    }

    /// Adds the next chunk; the bytes staged so far. The last chunk sent again is ignored.
    package func appendImport(id: String, sequence: Int, csv: [UInt8], in connection: any SQLConnection) throws -> Int {
        try DirectoryValidation.id(id, prefix: "i_", field: "import_id")
        guard csv.count <= Self.maxImportChunk else {
            throw DirectoryError.invalidArgument("a chunk may have at most \(Self.maxImportChunk) bytes")
        }
        return try connection.transaction { connection in
            let stage = try self.stage(id, in: connection)
            let next = Int(try connection.queryFirst("SELECT count(*) AS n FROM import_chunks WHERE import_id = ?", .text(id))?.int("n") ?? 0)
            if sequence == next - 1 { return stage.bytes }  // a repeat of the last one
            guard sequence == next else {
                throw DirectoryError.failedPrecondition("chunk \(sequence) is out of order; the next one is \(next)")
            }
            let total = stage.bytes + csv.count
            guard total <= Self.maxImportBytes else {
                throw DirectoryError.outOfRange("the file is larger than \(Self.maxImportBytes) bytes (8 MiB); split it")
            }
            try connection.run("INSERT INTO import_chunks (import_id, sequence, data) VALUES (?, ?, ?)", .text(id), .integer(Int64(sequence)), .blob(csv))
            try connection.run("UPDATE imports SET bytes = ? WHERE id = ?", .integer(Int64(total)), .text(id))
            return total
        }
    }

    /// Imports the staged file in one transaction and keeps the outcome (encoded by `encode`) for
    /// retries; a stage that finished already answers its kept outcome.
    package func commitImport(id: String, encode: (ImportReport) -> [UInt8], in connection: any SQLConnection) throws -> [UInt8] {
        try DirectoryValidation.id(id, prefix: "i_", field: "import_id")
        return try connection.transaction { connection in
            guard let row = try connection.queryFirst("SELECT * FROM imports WHERE id = ?", .text(id)) else {
                throw DirectoryError.notFound("no import stage has the id \(id) (stages expire after an hour)")
            }
            if row.string("state") == "finished", case .blob(let outcome) = row["outcome"] {
                return outcome
            }
            var csv: [UInt8] = []
            csv.reserveCapacity(Int(row.int("bytes") ?? 0))
            for chunk in try connection.query("SELECT data FROM import_chunks WHERE import_id = ? ORDER BY sequence", .text(id)) {
                if case .blob(let bytes) = chunk["data"] { csv += bytes }
            }
            let actor = ActorInfo(userID: row.string("actor_id") ?? "", clientAddress: row.string("actor_address") ?? "")
            let report = try self.importUsers(csv: csv, partial: row.int("partial") == 1, actor: actor, in: connection)
            let outcome = encode(report)
            try connection.run("DELETE FROM import_chunks WHERE import_id = ?", .text(id))
            try connection.run("UPDATE imports SET state = 'finished', outcome = ? WHERE id = ?", .blob(outcome), .text(id))
            return outcome
        }
    }

    private func stage(_ id: String, in connection: any SQLConnection) throws -> (id: String, bytes: Int) {
        guard let row = try connection.queryFirst("SELECT state, bytes FROM imports WHERE id = ?", .text(id)) else {
            throw DirectoryError.notFound("no import stage has the id \(id) (stages expire after an hour)")
        }
        guard row.string("state") == "staging" else {
            throw DirectoryError.failedPrecondition("import \(id) is committed already")
        }
        return (id, Int(row.int("bytes") ?? 0))
    }
}

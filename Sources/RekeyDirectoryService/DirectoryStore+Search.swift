import RekeyCrypto
import RekeySQLite

/// Search: type-to-filter over names and email addresses.
///
/// A user matches when every word of the query is the start of a word of their name or of one of
/// their addresses (words are runs of letters and digits, compared without case and diacritics).
/// Results are ranked by how the first query word matched — the start of the name first, then
/// another word of the name, then only an address — and then alphabetically by name.
///
/// Two indexes serve this. `search_prefixes` holds, for every user, each 1-3 character start of
/// each of their words in rank order, so the commonest queries (one short word, typed letter by
/// letter) read just one page of an index however many users match. Several words starting with
/// a short one read that word's entries in rank order and keep the users the other words match.
/// Longer first words, and sparse several-word queries, match far fewer users: they go through the
/// full-text table `user_search` (FTS5 on SQLite, a `tsvector` under a GIN index on PostgreSQL)
/// and are ranked in memory. Pages continue from the last result shown (keyset), so they stay stable while users are
/// added.
extension DirectoryStore {
    /// The longest query word `search_prefixes` answers alone.
    static let indexedPrefixLength = 3

    /// The column that ties a `user_search` row to its user: FTS5's rowid on SQLite.
    static func searchRowID(_ connection: any SQLConnection) -> String {
        connection.dialect == .sqlite ? "rowid" : "seq"
    }

    /// SQLite is told to read the staff-only index; PostgreSQL's planner picks it from `staff = 1`.
    static func staffIndex(_ staffOnly: Bool, _ connection: any SQLConnection) -> String {
        staffOnly && connection.dialect == .sqlite ? " INDEXED BY search_prefixes_staff" : ""
    }

    /// The words of a text as search compares them.
    static func searchWords(_ text: String) -> [String] {
        Self.searchKey(text).split { !$0.isLetter && !$0.isNumber }.map(String.init)
    }

    /// Lower case without diacritics: what names are compared and sorted by.
    static func searchKey(_ text: String) -> String {
        if text.utf8.allSatisfy({ $0 < 0x80 }) { return text.lowercased() }
        return text.folding(options: [.caseInsensitive, .diacriticInsensitive], locale: nil).lowercased()
    }

    /// The rank of a user for a query whose first word is `word`: 0 when the name starts with it,
    /// 1 when another word of the name does, 2 when only an address does.
    static func tier(of word: String, nameWords: [String]) -> Int {
        if nameWords.first?.hasPrefix(word) == true { return 0 }
        return nameWords.contains { $0.hasPrefix(word) } ? 1 : 2
    }

    /// A user's `search_prefixes` entries: prefix → best tier. The empty prefix lists everyone.
    static func prefixEntries(name: String, emails: [String]) -> [String: Int] {
        var entries: [String: Int] = ["": 0]
        func add(_ word: String, _ tier: Int) {
            var prefix = ""
            for character in word.prefix(Self.indexedPrefixLength) {
                prefix.append(character)
                entries[prefix] = min(entries[prefix] ?? tier, tier)
            }
        }
        for (index, word) in Self.searchWords(name).enumerated() {
            add(word, index == 0 ? 0 : 1)
        }
        for email in emails {
            for word in Self.searchWords(email) { add(word, 2) }
        }
        return entries
    }

    /// One row of `search_prefixes`.
    struct PrefixRow: Comparable {
        var prefix: String
        var tier: Int
        var nameKey: String
        var seq: Int64
        var staff: Bool

        /// Field by field rather than as a tuple: the same order, without the generic tuple
        /// comparison, which made sorting an import's rows twice as slow in debug builds.
        static func < (lhs: PrefixRow, rhs: PrefixRow) -> Bool {
            if lhs.prefix != rhs.prefix { return lhs.prefix < rhs.prefix }
            if lhs.tier != rhs.tier { return lhs.tier < rhs.tier }
            if lhs.nameKey != rhs.nameKey { return lhs.nameKey < rhs.nameKey }
            return lhs.seq < rhs.seq
        }
    }

    static func prefixRows(seq: Int64, name: String, emails: [String], staff: Bool) -> [PrefixRow] {
        let nameKey = Self.searchKey(name)
        return Self.prefixEntries(name: name, emails: emails).map { PrefixRow(prefix: $0.key, tier: $0.value, nameKey: nameKey, seq: seq, staff: staff) }
    }

    func insert(_ rows: [PrefixRow], in connection: any SQLConnection) throws {
        for row in rows {
            try connection.run(
                "INSERT INTO search_prefixes (prefix, tier, name_key, seq, staff) VALUES (?, ?, ?, ?, ?)",
                .text(row.prefix), .integer(Int64(row.tier)), .text(row.nameKey), .integer(row.seq), .integer(row.staff ? 1 : 0)
            )
        }
    }

    /// Adds a user to both search indexes.
    func insertSearchEntries(seq: Int64, name: String, emails: [String], staff: Bool, in connection: any SQLConnection) throws {
        try self.insertFullTextEntry(seq: seq, name: name, emails: emails, in: connection)
        try self.insert(Self.prefixRows(seq: seq, name: name, emails: emails, staff: staff), in: connection)
    }

    func insertFullTextEntry(seq: Int64, name: String, emails: [String], in connection: any SQLConnection) throws {
        switch connection.dialect {
        case .sqlite:
            try connection.run("INSERT INTO user_search (rowid, name, emails) VALUES (?, ?, ?)", .integer(seq), .text(name), .text(emails.joined(separator: " ")))
        case .postgres:
            let words = Self.searchWords(([name] + emails).joined(separator: " ")).joined(separator: " ")
            try connection.run(
                "INSERT INTO user_search (seq, name, emails, words) VALUES (?, ?, ?, to_tsvector('simple', ?))",
                .integer(seq), .text(name), .text(emails.joined(separator: " ")), .text(words)
            )
        }
    }

    /// Refreshes a user's search entries after their name, role or addresses changed.
    func reindex(_ userID: String, in connection: any SQLConnection) throws {
        guard let row = try connection.queryFirst(
            "SELECT u.seq, u.name, r.staff FROM users u JOIN roles r ON r.name = u.role WHERE u.id = ?", .text(userID)
        ), let seq = row.int("seq") else { return }
        if let old = try connection.queryFirst("SELECT name, emails FROM user_search WHERE \(Self.searchRowID(connection)) = ?", .integer(seq)) {
            let oldName = old.string("name") ?? ""
            let oldEmails = (old.string("emails") ?? "").split(separator: " ").map(String.init)
            let oldKey = Self.searchKey(oldName)
            for (prefix, tier) in Self.prefixEntries(name: oldName, emails: oldEmails) {
                try connection.run(
                    "DELETE FROM search_prefixes WHERE prefix = ? AND tier = ? AND name_key = ? AND seq = ?",
                    .text(prefix), .integer(Int64(tier)), .text(oldKey), .integer(seq)
                )
            }
            try connection.run("DELETE FROM user_search WHERE \(Self.searchRowID(connection)) = ?", .integer(seq))
        }
        let emails = try connection.query("SELECT address FROM emails WHERE user_id = ?", .text(userID)).compactMap { $0.string("address") }
        try self.insertSearchEntries(seq: seq, name: row.string("name") ?? "", emails: emails, staff: row.int("staff") == 1, in: connection)
    }

    /// Fills `search_prefixes` for users stored before it existed (schema version 3). Runs at
    /// start-up; does nothing when there is nothing to do.
    package func rebuildSearchPrefixesIfNeeded(in connection: any SQLConnection) throws -> Int {
        try connection.transaction { connection in
            guard try connection.queryFirst("SELECT value FROM directory_meta WHERE key = 'search_prefixes_pending'") != nil else { return 0 }
            try connection.run("DELETE FROM search_prefixes")
            let users = try connection.query("SELECT u.id FROM users u ORDER BY u.seq").compactMap { $0.string("id") }
            for id in users {
                try self.reindex(id, in: connection)
            }
            try connection.run("DELETE FROM directory_meta WHERE key = 'search_prefixes_pending'")
            return users.count
        }
    }

    private struct SearchCursor {
        var tier: Int64
        var nameKey: String
        var seq: Int64

        init(tier: Int64, nameKey: String, seq: Int64) {
            self.tier = tier
            self.nameKey = nameKey
            self.seq = seq
        }

        init(_ row: SQLiteRow) {
            self.init(tier: row.int("tier") ?? 0, nameKey: row.string("name_key") ?? "", seq: row.int("seq") ?? 0)
        }

        static let start = SearchCursor(tier: -1, nameKey: "", seq: 0)

        static func < (lhs: SearchCursor, rhs: SearchCursor) -> Bool {
            (lhs.tier, lhs.nameKey, lhs.seq) < (rhs.tier, rhs.nameKey, rhs.seq)
        }
    }

    /// How many of the first word's prefix-index entries a several-word query reads, in rank
    /// order, before it turns to the full-text index (which is quick when few users match).
    static let prefixScanLimit = 5000

    /// Several words, the first of 1-3 characters: reads the first word's entries in rank order and
    /// keeps the users who also have entries for the other words' first 1-3 characters (a lookup
    /// by primary key each: the same user has the same name key). Words longer than that are then
    /// checked in full. Nil when more than ``prefixScanLimit`` entries would have to be read.
    private func scanPrefixIndex(
        words: [String], staffOnly: Bool, after cursor: SearchCursor, limit: Int, in connection: any SQLConnection
    ) throws -> [SearchCursor]? {
        let others = words.dropFirst().map { String($0.prefix(Self.indexedPrefixLength)) }
        let exists = others.map { _ in
            " AND EXISTS (SELECT 1 FROM search_prefixes q WHERE q.prefix = ? AND q.tier IN (0, 1, 2) AND q.name_key = p.name_key AND q.seq = p.seq)"
        }.joined()
        let driver = """
            SELECT tier, name_key, seq FROM search_prefixes\(Self.staffIndex(staffOnly, connection))
            WHERE prefix = ?\(staffOnly ? " AND staff = 1" : "") AND (tier, name_key, seq) > (?, ?, ?)
            ORDER BY tier, name_key, seq
            """
        let start: [SQLiteValue] = [.text(words[0]), .integer(cursor.tier), .text(cursor.nameKey), .integer(cursor.seq)]
        let needsCheck = words.dropFirst().contains { $0.count > Self.indexedPrefixLength }
        let rows = try connection.query(
            "SELECT p.tier, p.name_key, p.seq FROM (\(driver) LIMIT \(Self.prefixScanLimit)) p WHERE 1 = 1\(exists) ORDER BY p.tier, p.name_key, p.seq",
            start + others.map(SQLiteValue.text)
        )
        var matches: [SearchCursor] = []
        for row in rows {
            if needsCheck {
                guard let text = try connection.queryFirst(
                    "SELECT name, emails FROM user_search WHERE \(Self.searchRowID(connection)) = ?", .integer(row.int("seq") ?? 0)
                ) else { continue }
                let userWords = Self.searchWords((text.string("name") ?? "") + " " + (text.string("emails") ?? ""))
                guard words.dropFirst().allSatisfy({ word in userWords.contains { $0.hasPrefix(word) } }) else { continue }
            }
            matches.append(SearchCursor(row))
            if matches.count == limit { return matches }
        }
        let exhausted = try connection.query("\(driver) LIMIT 1 OFFSET \(Self.prefixScanLimit - 1)", start).isEmpty
        return exhausted ? matches : nil
    }

    /// Any query, through FTS5: every match is ranked in memory.
    private func fullTextSearch(
        words: [String], staffOnly: Bool, after cursor: SearchCursor, limit: Int, in connection: any SQLConnection
    ) throws -> [SearchCursor] {
        let rows: [SQLiteRow]
        switch connection.dialect {
        case .sqlite:
            let match = words.map { "\"\($0)\"*" }.joined(separator: " AND ")
            rows = try connection.query(
                """
                SELECT s.rowid AS seq, s.name AS name FROM user_search s
                JOIN users u ON u.seq = s.rowid JOIN roles r ON r.name = u.role
                WHERE user_search MATCH ?\(staffOnly ? " AND r.staff = 1" : "")
                """,
                .text(match)
            )
        case .postgres:
            // Each word as a quoted prefix term ('word':*); words are letters and digits only.
            let match = words.map { "'\($0)':*" }.joined(separator: " & ")
            rows = try connection.query(
                """
                SELECT s.seq AS seq, s.name AS name, s.emails AS emails FROM user_search s
                JOIN users u ON u.seq = s.seq JOIN roles r ON r.name = u.role
                WHERE s.words @@ to_tsquery('simple', ?)\(staffOnly ? " AND r.staff = 1" : "")
                """,
                .text(match)
            ).filter { row in
                // PostgreSQL's parser may split a word where Rekey does not: keep exactly the
                // users every query word is the start of a word of.
                let userWords = Self.searchWords((row.string("name") ?? "") + " " + (row.string("emails") ?? ""))
                return words.allSatisfy { word in userWords.contains { $0.hasPrefix(word) } }
            }
        }
        var page = rows.compactMap { row -> SearchCursor? in
            let name = row.string("name") ?? ""
            let entry = SearchCursor(
                tier: Int64(Self.tier(of: words[0], nameWords: Self.searchWords(name))), nameKey: Self.searchKey(name), seq: row.int("seq") ?? 0
            )
            return cursor < entry ? entry : nil
        }
        page.sort(by: <)
        return Array(page.prefix(limit))
    }

    /// Type-to-filter search; `staffOnly` is the staff directory, otherwise unified search.
    package func search(
        _ query: String,
        staffOnly: Bool,
        pageSize: Int,
        pageToken: String,
        in connection: any SQLConnection
    ) throws -> (users: [UserRecord], next: String) {
        guard query.count <= 200 else {
            throw DirectoryError.invalidArgument("query is longer than 200 characters")
        }
        guard (1...100).contains(pageSize) else {
            throw DirectoryError.invalidArgument("page_size must be from 1 to 100 (0 for 20)")
        }
        let words = Array(Self.searchWords(query).prefix(8))
        let fingerprint = String(Self.fnv(words.joined(separator: " ") + (staffOnly ? "|staff" : "|all")), radix: 16)
        var cursor = SearchCursor.start
        if !pageToken.isEmpty {
            guard let parts = PageToken.fields(pageToken, kind: "s2", count: 4), parts[2] == fingerprint,
                  let tier = Int64(parts[0]), (0...2).contains(tier), let seq = Int64(parts[1]), seq > 0
            else {
                throw DirectoryError.invalidArgument("page_token is not one this service gave out for this query")
            }
            cursor = SearchCursor(tier: tier, nameKey: String(parts[3]), seq: seq)
        }

        var page: [SearchCursor]? = nil
        if words.count <= 1, (words.first?.count ?? 0) <= Self.indexedPrefixLength {
            let rows = try connection.query(
                """
                SELECT tier, name_key, seq FROM search_prefixes\(Self.staffIndex(staffOnly, connection))
                WHERE prefix = ?\(staffOnly ? " AND staff = 1" : "") AND (tier, name_key, seq) > (?, ?, ?)
                ORDER BY tier, name_key, seq LIMIT ?
                """,
                .text(words.first ?? ""), .integer(cursor.tier), .text(cursor.nameKey), .integer(cursor.seq), .integer(Int64(pageSize + 1))
            )
            page = rows.map(SearchCursor.init)
        } else if words[0].count <= Self.indexedPrefixLength {
            page = try self.scanPrefixIndex(words: words, staffOnly: staffOnly, after: cursor, limit: pageSize + 1, in: connection)
        }
        if page == nil {
            page = try self.fullTextSearch(words: words, staffOnly: staffOnly, after: cursor, limit: pageSize + 1, in: connection)
        }
        var results = page ?? []
        var next = ""
        if results.count > pageSize {
            results.removeLast()
            let last = results[results.count - 1]
            next = PageToken.encode("s2", ["\(last.tier)", "\(last.seq)", fingerprint, last.nameKey])
        }
        let seqs = results.map(\.seq)
        var found: [Int64: SQLiteRow] = [:]
        if !seqs.isEmpty {
            for row in try connection.query(
                Self.userSelect + " WHERE u.seq IN (\(Array(repeating: "?", count: seqs.count).joined(separator: ", ")))", seqs.map(SQLiteValue.integer)
            ) {
                found[row.int("seq") ?? 0] = row
            }
        }
        let rows = try seqs.map { seq in
            guard let row = found[seq] else {
                throw DirectoryError.failedPrecondition("the search index names a user who no longer exists; restart the service to rebuild it")
            }
            return row
        }
        let users = try self.userRecords(rows, in: connection)
        return (users, next)
    }
}

import Foundation

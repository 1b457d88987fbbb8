/// The opaque `page_token` every list RPC gives out and takes back: `kind|field|…` in URL-safe
/// base64. `kind` names the list and its format version (`l1`, `a1`, `s2`, `t1`, `m1`, …), so a
/// token from one list is never read as another's. Not a secret and not signed: a token a client
/// made up only moves its own cursor, and each list checks the fields it reads.
package enum PageToken {
    package static func encode(_ kind: String, _ fields: [String]) -> String {
        Base64URL.encode(Array(([kind] + fields).joined(separator: "|").utf8))
    }

    /// A token holding one positive position, such as a row id.
    package static func encode(_ kind: String, _ position: Int64) -> String {
        Self.encode(kind, [String(position)])
    }

    /// The `count` fields of a token of `kind` (the last field may itself hold `|`); nil for
    /// anything else, which callers answer with INVALID_ARGUMENT.
    package static func fields(_ token: String, kind: String, count: Int) -> [Substring]? {
        // Search cursors carry a name's sort key (up to 200 characters, several bytes each).
        guard token.utf8.count <= 8192, let bytes = Base64URL.decode(token), let text = String(validating: bytes, as: UTF8.self) else { return nil }
        let parts = text.split(separator: "|", maxSplits: count, omittingEmptySubsequences: false)
        guard parts.count == count + 1, parts[0] == kind else { return nil }
        return Array(parts.dropFirst())
    }

    /// The positive position a one-field token of `kind` holds; nil when it is not such a token.
    package static func position(_ token: String, kind: String) -> Int64? {
        guard let fields = Self.fields(token, kind: kind, count: 1), let value = Int64(fields[0]), value > 0 else { return nil }
        return value
    }
}

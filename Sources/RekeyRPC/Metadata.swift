/// Key-value pairs sent with a call (request metadata) or with its answer (trailers).
///
/// Keys are compared as lower-case ASCII. A key may appear more than once; the subscript reads the
/// first value.
package struct Metadata: Hashable, Sendable, ExpressibleByDictionaryLiteral, Sequence {
    package private(set) var entries: [(key: String, value: String)]

    package init() {
        self.entries = []
    }

    package init(dictionaryLiteral elements: (String, String)...) {
        self.entries = elements.map { (key: Self.normalized($0.0), value: $0.1) }
    }

    package var isEmpty: Bool { self.entries.isEmpty }
    package var count: Int { self.entries.count }

    /// The first value for `key`; setting replaces every value of `key` (nil removes them).
    package subscript(key: String) -> String? {
        get {
            let key = Self.normalized(key)
            return self.entries.first { $0.key == key }?.value
        }
        set {
            let key = Self.normalized(key)
            self.entries.removeAll { $0.key == key }
            if let newValue {
                self.entries.append((key: key, value: newValue))
            }
        }
    }

    package mutating func add(_ key: String, _ value: String) {
        self.entries.append((key: Self.normalized(key), value: value))
    }

    /// The key in lower case; keys are almost always lower case already, so check before copying.
    private static func normalized(_ key: String) -> String {
        key.utf8.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) ? key.lowercased() : key
    }

    package func makeIterator() -> IndexingIterator<[(key: String, value: String)]> {
        self.entries.makeIterator()
    }

    package static func == (lhs: Metadata, rhs: Metadata) -> Bool {
        lhs.entries.elementsEqual(rhs.entries) { $0.key == $1.key && $0.value == $1.value }
    }

    package func hash(into hasher: inout Hasher) {
        for entry in self.entries {
            hasher.combine(entry.key)
            hasher.combine(entry.value)
        }
    }
}

/// The well-known metadata keys Rekey's servers and clients understand.
package enum MetadataKey {
    /// Traces one external request across every service it touches.
    package static let requestID = "request-id"
    /// The name of the calling service, for logs (`gateway`, `directory`, …).
    package static let caller = "caller"
    /// `Bearer <service credential>`.
    package static let authorization = "authorization"
    /// On RESOURCE_EXHAUSTED or UNAVAILABLE: seconds until a retry can succeed.
    package static let retryAfterSeconds = "retry-after-seconds"
    /// On UNAVAILABLE: `1` when the server did not start the call (it is draining), so the
    /// caller may send it to another replica whatever the method.
    package static let notStarted = "not-started"
    /// Why a PERMISSION_DENIED was given, as a stable code (`outranked`, `owner_only`, …).
    package static let refusal = "refusal"
}

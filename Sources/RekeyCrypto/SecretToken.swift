/// A random secret that is handed out once and stored only as its SHA-256: reset and verification
/// tokens, API keys, session tokens.
package struct SecretToken: Sendable, Hashable {
    /// The secret as it travels: 256 bits in URL-safe base64 (43 characters).
    package let value: String

    /// A fresh token of 256 bits from OpenSSL's CSPRNG.
    package static func generate() throws -> SecretToken {
        SecretToken(value: Base64URL.encode(try OpenSSL.randomBytes(32)))
    }

    package init(value: String) {
        self.value = value
    }

    /// What is stored: the SHA-256 of the token's text.
    package var digest: [UInt8] {
        Self.digest(of: self.value)
    }

    package static func digest(of value: String) -> [UInt8] {
        OpenSSL.sha256(Array(value.utf8))
    }
}

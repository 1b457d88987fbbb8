/// Hashes and verifies passwords with scrypt, in a self-describing string so that the cost can be
/// raised later while old hashes still verify:
///
///     $scrypt$ln=17,r=8,p=1$<salt, base64url>$<32-byte key, base64url>
///
/// `ln` is log2(N). The production default is N=2^17, r=8, p=1 (about half a second and 128 MiB
/// here); tests configure a small cost, never production.
package struct PasswordHasher: Sendable {
    package struct Parameters: Hashable, Sendable, CustomStringConvertible {
        package var logN: Int
        package var r: Int
        package var p: Int

        package init(logN: Int, r: Int, p: Int) {
            self.logN = logN
            self.r = r
            self.p = p
        }

        /// OWASP's recommendation for scrypt.
        package static let production = Parameters(logN: 17, r: 8, p: 1)

        package var description: String { "ln=\(self.logN),r=\(self.r),p=\(self.p)" }

        /// Whether OpenSSL can compute these at all, within a sane bound (N up to 2^22).
        package var isValid: Bool {
            (1...22).contains(self.logN) && (1...32).contains(self.r) && (1...16).contains(self.p)
        }
    }

    /// What verification found.
    package enum Verification: Hashable, Sendable {
        case mismatch
        case match
        /// The password is right but the hash uses other parameters: store a new hash.
        case matchNeedsRehash
    }

    package static let saltLength = 16
    package static let keyLength = 32

    package let parameters: Parameters

    package init(parameters: Parameters = .production) {
        precondition(parameters.isValid, "invalid scrypt parameters \(parameters)")
        self.parameters = parameters
    }

    /// A new hash of `password` with a fresh salt.
    package func hash(_ password: String) throws -> String {
        let salt = try OpenSSL.randomBytes(Self.saltLength)
        let key = try Self.derive(password, salt: salt, parameters: self.parameters)
        return "$scrypt$\(self.parameters)$\(Base64URL.encode(salt))$\(Base64URL.encode(key))"
    }

    /// Checks `password` against a stored hash; a stored hash that cannot be parsed never matches.
    package func verify(_ password: String, against stored: String) throws -> Verification {
        guard let parsed = Self.parse(stored) else {
            return .mismatch
        }
        let key = try Self.derive(password, salt: parsed.salt, parameters: parsed.parameters)
        guard OpenSSL.constantTimeEquals(key, parsed.key) else {
            return .mismatch
        }
        return parsed.parameters == self.parameters ? .match : .matchNeedsRehash
    }

    /// Spends the time a real verification would, for accounts that do not exist, so that timing
    /// does not tell whether an account exists.
    package func verifyAgainstNothing(_ password: String) throws {
        _ = try Self.derive(password, salt: [UInt8](repeating: 0, count: Self.saltLength), parameters: self.parameters)
    }

    private static func derive(_ password: String, salt: [UInt8], parameters: Parameters) throws -> [UInt8] {
        try OpenSSL.scrypt(
            password: Array(password.utf8),
            salt: salt,
            n: 1 << UInt64(parameters.logN),
            r: UInt64(parameters.r),
            p: UInt64(parameters.p),
            length: Self.keyLength
        )
    }

    private static func parse(_ stored: String) -> (parameters: Parameters, salt: [UInt8], key: [UInt8])? {
        let parts = stored.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0].isEmpty, parts[1] == "scrypt" else { return nil }
        var values: [String: Int] = [:]
        for pair in parts[2].split(separator: ",") {
            let keyValue = pair.split(separator: "=")
            guard keyValue.count == 2, let value = Int(keyValue[1]) else { return nil }
            values[String(keyValue[0])] = value
        }
        guard let logN = values["ln"], let r = values["r"], let p = values["p"] else { return nil }
        let parameters = Parameters(logN: logN, r: r, p: p)
        guard parameters.isValid,
              let salt = Base64URL.decode(String(parts[3])), !salt.isEmpty,
              let key = Base64URL.decode(String(parts[4])), key.count == Self.keyLength
        else { return nil }
        return (parameters, salt, key)
    }
}

import CCrypto

/// The OpenSSL libcrypto calls Rekey uses. Every raw OpenSSL call in the project is in this type.
package enum OpenSSL {
    /// The OpenSSL library version in use, for start-up logs.
    package static var version: String {
        String(cString: rekey_openssl_version())
    }

    /// `count` bytes from OpenSSL's CSPRNG.
    package static func randomBytes(_ count: Int) throws(CryptoError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let status = bytes.withUnsafeMutableBytes { buffer in
            RAND_bytes(buffer.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(count))
        }
        guard status == 1 else {
            throw CryptoError(operation: "RAND_bytes", detail: Self.lastError())
        }
        return bytes
    }

    /// The SHA-256 digest of `bytes`.
    package static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let status = bytes.withUnsafeBytes { input in
            digest.withUnsafeMutableBytes { output in
                EVP_Digest(
                    input.baseAddress, input.count,
                    output.baseAddress?.assumingMemoryBound(to: UInt8.self), &length,
                    EVP_sha256(), nil
                )
            }
        }
        precondition(status == 1 && length == 32, "EVP_Digest(SHA-256) failed: \(Self.lastError())")
        return digest
    }

    /// HMAC-SHA-256 (RFC 2104) of `message` under `key`, through OpenSSL's one-shot `HMAC`.
    package static func hmacSHA256(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        var mac = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let result = key.withUnsafeBytes { keyBytes in
            message.withUnsafeBytes { input in
                mac.withUnsafeMutableBytes { output in
                    HMAC(
                        EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count),
                        input.baseAddress?.assumingMemoryBound(to: UInt8.self), input.count,
                        output.baseAddress?.assumingMemoryBound(to: UInt8.self), &length
                    )
                }
            }
        }
        precondition(result != nil && length == 32, "HMAC(SHA-256) failed: \(Self.lastError())")
        return mac
    }

    /// Whether two byte strings are equal, in time that does not depend on where they differ.
    package static func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        guard !lhs.isEmpty else { return true }
        return lhs.withUnsafeBytes { left in
            rhs.withUnsafeBytes { right in
                CRYPTO_memcmp(left.baseAddress, right.baseAddress, left.count) == 0
            }
        }
    }

    /// scrypt (RFC 7914) of `password` and `salt` with cost `n`, block size `r` and parallelism `p`.
    package static func scrypt(
        password: [UInt8],
        salt: [UInt8],
        n: UInt64,
        r: UInt64,
        p: UInt64,
        length: Int
    ) throws(CryptoError) -> [UInt8] {
        var key = [UInt8](repeating: 0, count: length)
        // OpenSSL's default limit is 32 MiB, below what N=2^15 and up need: allow what the
        // parameters need (128·r·N·p for V, 128·r·p for B) plus slack.
        let maxMemory = 128 * r * n * p + 128 * r * p + 1 << 20
        let status = password.withUnsafeBytes { passwordBytes in
            salt.withUnsafeBytes { saltBytes in
                key.withUnsafeMutableBytes { output in
                    EVP_PBE_scrypt(
                        passwordBytes.baseAddress?.assumingMemoryBound(to: CChar.self), passwordBytes.count,
                        saltBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), saltBytes.count,
                        n, r, p, maxMemory,
                        output.baseAddress?.assumingMemoryBound(to: UInt8.self), length
                    )
                }
            }
        }
        guard status == 1 else {
            throw CryptoError(operation: "EVP_PBE_scrypt", detail: Self.lastError())
        }
        return key
    }

    static func lastError() -> String {
        let code = ERR_get_error()
        guard code != 0 else { return "no OpenSSL error recorded" }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An OpenSSL call that failed.
package struct CryptoError: Error, Hashable, CustomStringConvertible {
    package var operation: String
    package var detail: String

    package var description: String { "\(self.operation) failed: \(self.detail)" }
}

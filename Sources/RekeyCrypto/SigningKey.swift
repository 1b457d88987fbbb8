import CCrypto

/// A private key for signatures (RSA or Ed25519) held by OpenSSL: loaded from a PEM file or made
/// here, it signs, verifies, and gives its public half in the forms DNS records carry.
///
/// The `EVP_PKEY` is owned by this object and freed with it. OpenSSL 3 allows one key to be used by
/// several threads at once for signing (each call has its own context), hence `Sendable`.
package final class SigningKey: @unchecked Sendable {
    package enum Algorithm: Sendable, Hashable, CustomStringConvertible {
        case rsa(bits: Int)
        case ed25519

        package var description: String {
            switch self {
            case .rsa(let bits): "RSA \(bits)-bit"
            case .ed25519: "Ed25519"
            }
        }
    }

    package let algorithm: Algorithm
    private let key: OpaquePointer

    private init(taking key: OpaquePointer) throws(CryptoError) {
        switch EVP_PKEY_get_id(key) {
        case EVP_PKEY_RSA:
            self.algorithm = .rsa(bits: Int(EVP_PKEY_get_bits(key)))
        case EVP_PKEY_ED25519:
            self.algorithm = .ed25519
        default:
            EVP_PKEY_free(key)
            throw CryptoError(operation: "loading the key", detail: "the key is neither RSA nor Ed25519")
        }
        self.key = key
    }

    deinit {
        EVP_PKEY_free(self.key)
    }

    /// A private key from PEM text (PKCS#8 `PRIVATE KEY`, or `RSA PRIVATE KEY`). A key protected
    /// by a passphrase is refused (nothing would be there to type it).
    package convenience init(pem: [UInt8]) throws(CryptoError) {
        let loaded: OpaquePointer? = pem.withUnsafeBytes { bytes in
            guard let bio = BIO_new_mem_buf(bytes.baseAddress, Int32(bytes.count)) else { return nil }
            defer { BIO_free(bio) }
            // A callback that offers no passphrase, so that OpenSSL never asks on a terminal.
            return PEM_read_bio_PrivateKey(bio, nil, { _, _, _, _ in 0 }, nil)
        }
        guard let loaded else {
            throw CryptoError(operation: "reading the PEM private key", detail: OpenSSL.lastError())
        }
        try self.init(taking: loaded)
    }

    /// A new key: RSA with `bits` (2048 and up) or Ed25519.
    package static func generate(_ algorithm: Algorithm) throws(CryptoError) -> SigningKey {
        let id: Int32
        switch algorithm {
        case .rsa(let bits):
            guard (2048...8192).contains(bits) else {
                throw CryptoError(operation: "making an RSA key", detail: "the size must be 2048 to 8192 bits")
            }
            id = EVP_PKEY_RSA
        case .ed25519:
            id = EVP_PKEY_ED25519
        }
        guard let context = EVP_PKEY_CTX_new_id(id, nil) else {
            throw CryptoError(operation: "EVP_PKEY_CTX_new_id", detail: OpenSSL.lastError())
        }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_keygen_init(context) == 1 else {
            throw CryptoError(operation: "EVP_PKEY_keygen_init", detail: OpenSSL.lastError())
        }
        if case .rsa(let bits) = algorithm, EVP_PKEY_CTX_set_rsa_keygen_bits(context, Int32(bits)) != 1 {
            throw CryptoError(operation: "EVP_PKEY_CTX_set_rsa_keygen_bits", detail: OpenSSL.lastError())
        }
        var key: OpaquePointer? = nil
        guard EVP_PKEY_keygen(context, &key) == 1, let key else {
            throw CryptoError(operation: "EVP_PKEY_keygen", detail: OpenSSL.lastError())
        }
        return try SigningKey(taking: key)
    }

    /// The private key as unencrypted PKCS#8 PEM, for a file only its owner can read.
    package func privateKeyPEM() throws(CryptoError) -> [UInt8] {
        guard let bio = BIO_new(BIO_s_mem()) else {
            throw CryptoError(operation: "BIO_new", detail: OpenSSL.lastError())
        }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PrivateKey(bio, self.key, nil, nil, 0, nil, nil) == 1 else {
            throw CryptoError(operation: "PEM_write_bio_PrivateKey", detail: OpenSSL.lastError())
        }
        var data: UnsafeMutablePointer<CChar>? = nil
        let length = rekey_bio_mem_data(bio, &data)
        guard length > 0, let data else {
            throw CryptoError(operation: "PEM_write_bio_PrivateKey", detail: "no output")
        }
        return data.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
    }

    /// The public key as DKIM's `p=` carries it: the DER SubjectPublicKeyInfo for RSA (RFC 6376),
    /// the raw 32 bytes for Ed25519 (RFC 8463).
    package func publicKeyForDNS() throws(CryptoError) -> [UInt8] {
        switch self.algorithm {
        case .ed25519:
            var length = 0
            guard EVP_PKEY_get_raw_public_key(self.key, nil, &length) == 1 else {
                throw CryptoError(operation: "EVP_PKEY_get_raw_public_key", detail: OpenSSL.lastError())
            }
            var raw = [UInt8](repeating: 0, count: length)
            guard EVP_PKEY_get_raw_public_key(self.key, &raw, &length) == 1 else {
                throw CryptoError(operation: "EVP_PKEY_get_raw_public_key", detail: OpenSSL.lastError())
            }
            return Array(raw.prefix(length))
        case .rsa:
            let length = i2d_PUBKEY(self.key, nil)
            guard length > 0 else {
                throw CryptoError(operation: "i2d_PUBKEY", detail: OpenSSL.lastError())
            }
            var der = [UInt8](repeating: 0, count: Int(length))
            let written = der.withUnsafeMutableBufferPointer { buffer in
                var cursor = buffer.baseAddress
                return i2d_PUBKEY(self.key, &cursor)
            }
            guard written == length else {
                throw CryptoError(operation: "i2d_PUBKEY", detail: OpenSSL.lastError())
            }
            return der
        }
    }

    /// A signature of `message`: RSASSA-PKCS1-v1_5 over its SHA-256 for RSA, PureEdDSA over the
    /// message itself for Ed25519.
    package func sign(_ message: [UInt8]) throws(CryptoError) -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else {
            throw CryptoError(operation: "EVP_MD_CTX_new", detail: OpenSSL.lastError())
        }
        defer { EVP_MD_CTX_free(context) }
        let digest = self.algorithm == .ed25519 ? nil : EVP_sha256()
        guard EVP_DigestSignInit(context, nil, digest, nil, self.key) == 1 else {
            throw CryptoError(operation: "EVP_DigestSignInit", detail: OpenSSL.lastError())
        }
        var length = 0
        let sized = message.withUnsafeBufferPointer { EVP_DigestSign(context, nil, &length, $0.baseAddress, $0.count) }
        guard sized == 1 else {
            throw CryptoError(operation: "EVP_DigestSign", detail: OpenSSL.lastError())
        }
        var signature = [UInt8](repeating: 0, count: length)
        let signed = message.withUnsafeBufferPointer { EVP_DigestSign(context, &signature, &length, $0.baseAddress, $0.count) }
        guard signed == 1 else {
            throw CryptoError(operation: "EVP_DigestSign", detail: OpenSSL.lastError())
        }
        return Array(signature.prefix(length))
    }

    /// Whether `signature` is this key's signature of `message` (as made by `sign`).
    package func verify(_ signature: [UInt8], of message: [UInt8]) -> Bool {
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        let digest = self.algorithm == .ed25519 ? nil : EVP_sha256()
        guard EVP_DigestVerifyInit(context, nil, digest, nil, self.key) == 1 else { return false }
        let status = signature.withUnsafeBufferPointer { signatureBytes in
            message.withUnsafeBufferPointer { messageBytes in
                EVP_DigestVerify(context, signatureBytes.baseAddress, signatureBytes.count, messageBytes.baseAddress, messageBytes.count)
            }
        }
        ERR_clear_error()
        return status == 1
    }
}

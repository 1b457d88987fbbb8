/// Lower-case hexadecimal text, for ids made of random bytes.
package enum Hex {
    package static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A prefix followed by 32 hex digits of fresh CSPRNG bytes: `u_3f…`.
    package static func randomID(prefix: String) throws -> String {
        prefix + Self.encode(try OpenSSL.randomBytes(16))
    }
}

import RekeyCrypto
import Testing

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { byte in
        let digits = String(byte, radix: 16)
        return digits.count == 1 ? "0" + digits : digits
    }.joined()
}

@Suite("OpenSSL")
struct OpenSSLTests {
    @Test("SHA-256 matches the FIPS 180-2 test vectors")
    func sha256() {
        #expect(hex(OpenSSL.sha256(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex(OpenSSL.sha256([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    /// RFC 4231, test cases 1 and 2.
    @Test func hmacSHA256() {
        #expect(hex(OpenSSL.hmacSHA256(key: [UInt8](repeating: 0x0b, count: 20), Array("Hi There".utf8)))
            == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(hex(OpenSSL.hmacSHA256(key: Array("Jefe".utf8), Array("what do ya want for nothing?".utf8)))
            == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test("scrypt matches RFC 7914's test vector")
    func scrypt() throws {
        let key = try OpenSSL.scrypt(password: Array("password".utf8), salt: Array("NaCl".utf8), n: 1024, r: 8, p: 16, length: 64)
        #expect(hex(key) == "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640")
    }

    @Test("random bytes differ from call to call")
    func random() throws {
        let first = try OpenSSL.randomBytes(32)
        let second = try OpenSSL.randomBytes(32)
        #expect(first.count == 32)
        #expect(first != second)
    }

    @Test("constant-time comparison is exact")
    func constantTime() {
        #expect(OpenSSL.constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!OpenSSL.constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!OpenSSL.constantTimeEquals([1, 2, 3], [1, 2]))
        #expect(OpenSSL.constantTimeEquals([], []))
    }

    @Test("the library reports its version")
    func version() {
        #expect(OpenSSL.version.hasPrefix("OpenSSL 3"))
    }
}

@Suite("Base64URL")
struct Base64URLTests {
    @Test("encodes RFC 4648's vectors without padding, in the URL-safe alphabet", arguments: [
        ("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE"), ("foobar", "Zm9vYmFy"),
    ])
    func vectors(plain: String, encoded: String) {
        #expect(Base64URL.encode(Array(plain.utf8)) == encoded)
        #expect(Base64URL.decode(encoded) == Array(plain.utf8))
    }

    @Test("uses - and _ instead of + and /")
    func urlSafe() {
        #expect(Base64URL.encode([0xFB, 0xFF]) == "-_8")
        #expect(Base64URL.decode("-_8") == [0xFB, 0xFF])
    }

    @Test("rejects what is not unpadded URL-safe base64", arguments: ["Zg==", "Z", "Zm9v+", "Zm9v/", "Zh", "a b", "é"])
    func rejects(text: String) {
        #expect(Base64URL.decode(text) == nil)
    }
}

@Suite("SecretToken")
struct SecretTokenTests {
    @Test("tokens carry 256 bits, are URL-safe, and are stored as their SHA-256")
    func tokens() throws {
        let token = try SecretToken.generate()
        #expect(token.value.count == 43)
        #expect(Base64URL.decode(token.value)?.count == 32)
        #expect(token.digest == OpenSSL.sha256(Array(token.value.utf8)))
        #expect(try SecretToken.generate() != token)
    }
}

import RekeyCrypto
import Testing

@Suite("PasswordHasher")
struct PasswordHasherTests {
    /// A small cost for tests; production uses ``PasswordHasher/Parameters/production``.
    let hasher = PasswordHasher(parameters: .init(logN: 10, r: 8, p: 1))

    @Test("the production default is N=2^17, r=8, p=1")
    func productionDefault() {
        #expect(PasswordHasher().parameters == PasswordHasher.Parameters(logN: 17, r: 8, p: 1))
    }

    @Test("a hash verifies its password and no other")
    func verify() throws {
        let stored = try self.hasher.hash("correct horse battery staple")
        #expect(stored.hasPrefix("$scrypt$ln=10,r=8,p=1$"))
        #expect(try self.hasher.verify("correct horse battery staple", against: stored) == .match)
        #expect(try self.hasher.verify("correct horse battery stapl", against: stored) == .mismatch)
        #expect(try self.hasher.hash("same") != self.hasher.hash("same"), "each hash has its own salt")
    }

    @Test("a hash made with other parameters still verifies and asks to be upgraded")
    func rehash() throws {
        let old = try PasswordHasher(parameters: .init(logN: 9, r: 8, p: 1)).hash("pässwörd with ünicode")
        #expect(try self.hasher.verify("pässwörd with ünicode", against: old) == .matchNeedsRehash)
    }

    @Test("stored strings that cannot be parsed never match", arguments: [
        "", "plain", "$scrypt$", "$scrypt$ln=10,r=8,p=1$$", "$scrypt$ln=99,r=8,p=1$AAAA$AAAA",
        "$bcrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ])
    func malformed(stored: String) throws {
        #expect(try self.hasher.verify("anything", against: stored) == .mismatch)
    }

    @Test("verifying against no account does the same work and does not fail")
    func dummy() throws {
        try self.hasher.verifyAgainstNothing("whatever")
    }
}

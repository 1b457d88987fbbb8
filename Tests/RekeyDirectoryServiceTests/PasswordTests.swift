import Foundation
import RekeyClock
import RekeyCrypto
import RekeyDirectoryAPI
import RekeyDirectoryService
import RekeyRPC
import RekeySQLite
import RekeyTesting
import Testing

@Suite("Passwords")
struct PasswordTests {
    @Test("the policy names every rule a password breaks", arguments: [
        ("short", ["at least 12"]),
        (String(repeating: "x", count: 129), ["at most 128"]),
        ("1QAZ2WSX3EDC", ["most common"]),
        ("Jane Doe", ["at least 12", "name or email"]),
        ("jane.doe@example.com", ["name or email"]),
        ("JANE.DOE", ["at least 12", "name or email"]),
        ("a perfectly fine passphrase", []),
    ])
    func policy(password: String, expected: [String]) {
        let problems = PasswordPolicy().problems(with: password, name: "Jane Doe", emails: ["Jane.Doe@example.com"])
        #expect(problems.count == expected.count, "\(problems)")
        for (problem, fragment) in zip(problems, expected) {
            #expect(problem.contains(fragment), "\(problem)")
        }
    }

    @Test("a hash made at an older cost still signs in, and is upgraded to the current cost", arguments: Backend.allCases)
    func rehashOnSignIn(backend: Backend) async throws {
        let directory = try await DirectoryFixture(backend)
        let user = try await directory.run { store, c in try store.createUser(.init(name: "Jane", role: "customer", email: "jane@example.com"), actor: .system, in: c) }
        let old = try PasswordHasher(parameters: .init(logN: 8, r: 8, p: 1)).hash("an old but good passphrase")
        _ = try await directory.run { store, c in try store.storePasswordHash(user.id, hash: old, actor: .system, revokeSessions: false, in: c) }

        let service = DirectoryService(
            database: directory.database, store: directory.store,
            hashing: HashingPool(hasher: PasswordHasher(parameters: .init(logN: 10, r: 8, p: 1)), threads: 1)
        )
        try await withRPCServer(services: [service]) { _, port in
            try await withRPCClient(port: port) { client in
                var verify = Rekey_Directory_V1_VerifyPasswordRequest()
                verify.email = "jane@example.com"
                verify.password = "an old but good passphrase"
                let signedIn = try await Rekey_Directory_V1_Directory.Client(wrapping: client).verifyPassword(verify)
                #expect(signedIn.user?.id == user.id)
            }
        }
        let stored = try await directory.run { _, c in try c.queryFirst("SELECT password_hash FROM users")?.string("password_hash") }
        #expect(stored?.hasPrefix("$scrypt$ln=10,r=8,p=1$") == true)
    }

    @Test("when every hashing thread is busy past the deadline, the call fails with RESOURCE_EXHAUSTED")
    func hashingPoolIsBounded() async throws {
        let pool = HashingPool(hasher: PasswordHasher(parameters: .init(logN: 16, r: 8, p: 1)), threads: 1, maxWait: .milliseconds(20))
        // On a loaded machine the waiting call may not wake again until the slow hash is over and
        // then get the freed thread; such a round proves nothing and is tried again.
        var refused = false
        for _ in 0..<5 where !refused {
            let slow = Task { try await pool.hash("a slow one to fill the pool") }
            while pool.runningCount == 0 {
                await Task.yield()
            }
            do {
                _ = try await pool.hash("this one has to wait")
                _ = try await slow.value
            } catch let error as DirectoryError {
                #expect(error == .resourceExhausted("too many password checks at once; try again shortly"))
                refused = true
                _ = try await slow.value
            }
        }
        #expect(refused, "the second call was never refused in five rounds")
    }

    @Test("each client address has a bounded share of the pool; past it, refused at once; others are admitted")
    func fairShare() async throws {
        let pool = HashingPool(hasher: PasswordHasher(parameters: .init(logN: 10, r: 8, p: 1)), threads: 1, sharePerClient: 2)
        #expect(pool.admit("192.0.2.1"))
        #expect(pool.admit("192.0.2.1"))
        #expect(!pool.admit("192.0.2.1"))
        #expect(pool.admit("192.0.2.2"))
        pool.release("192.0.2.1")
        #expect(pool.admit("192.0.2.1"))
        await #expect(throws: DirectoryError.signInLimited(retryAfter: 1)) {
            try await pool.verify("whatever it is", against: nil, client: "192.0.2.1")
        }
        #expect(try await pool.verify("whatever it is", against: nil, client: "192.0.2.3") == .mismatch)
    }
}

import NIOPosix
import RekeyCrypto
import RekeyRPC
import Synchronization

/// Runs scrypt on a bounded pool of threads of its own, off the event loops and off the database
/// thread, so a burst of sign-ins cannot starve other calls.
///
/// At most `threads` hashes run at once; a call that finds them all busy waits for a free one until
/// its deadline (or `maxWait`), then fails with RESOURCE_EXHAUSTED.
///
/// Sign-in checks are admitted fairly: each client address may have at most `sharePerClient`
/// checks waiting or running; one more is refused at once (before any hashing), so a few busy
/// addresses cannot make everyone else wait out their deadline.
package final class HashingPool: Sendable {
    package let hasher: PasswordHasher
    private let pool: NIOThreadPool
    private let threads: Int
    private let busy = Mutex(0)
    private let maxWait: Duration
    private let sharePerClient: Int
    private let admitted = Mutex<[String: Int]>([:])

    package init(hasher: PasswordHasher, threads: Int, maxWait: Duration = .seconds(5), sharePerClient: Int? = nil) {
        self.hasher = hasher
        self.threads = max(1, threads)
        self.sharePerClient = max(1, sharePerClient ?? self.threads)
        self.pool = NIOThreadPool(numberOfThreads: self.threads)
        self.pool.start()
        self.maxWait = maxWait
    }

    deinit {
        self.pool.shutdownGracefully { _ in }
    }

    /// How many hashes are running now.
    package var runningCount: Int { self.busy.withLock { $0 } }

    /// A new hash of `password`.
    package func hash(_ password: String) async throws -> String {
        try await self.run { [hasher] in try hasher.hash(password) }
    }

    /// Checks `password` against `stored`; with no stored hash, spends the same time and fails.
    /// With a `client` (its address), the check counts against that client's share and is refused
    /// with ``DirectoryError/signInLimited(retryAfter:)`` when the share is taken.
    package func verify(_ password: String, against stored: String?, client: String? = nil) async throws -> PasswordHasher.Verification {
        guard let client, !client.isEmpty else { return try await self.verifyNow(password, against: stored) }
        guard self.admit(client) else {
            throw DirectoryError.signInLimited(retryAfter: 1)
        }
        defer { self.release(client) }
        return try await self.verifyNow(password, against: stored)
    }

    /// Takes one of `client`'s places; false when all of its share is waiting or running.
    package func admit(_ client: String) -> Bool {
        self.admitted.withLock { admitted in
            let count = admitted[client, default: 0]
            guard count < self.sharePerClient else { return false }
            admitted[client] = count + 1
            return true
        }
    }

    package func release(_ client: String) {
        self.admitted.withLock { admitted in
            let count = admitted[client, default: 1] - 1
            admitted[client] = count > 0 ? count : nil
        }
    }

    private func verifyNow(_ password: String, against stored: String?) async throws -> PasswordHasher.Verification {
        try await self.run { [hasher] in
            guard let stored else {
                try hasher.verifyAgainstNothing(password)
                return .mismatch
            }
            return try hasher.verify(password, against: stored)
        }
    }

    private func run<R: Sendable>(_ work: @escaping @Sendable () throws -> R) async throws -> R {
        let deadline = min(ServerContext.current?.deadline ?? .now + self.maxWait, .now + self.maxWait)
        while !self.busy.withLock({ count in
            guard count < self.threads else { return false }
            count += 1
            return true
        }) {
            guard ContinuousClock.now < deadline else {
                throw DirectoryError.resourceExhausted("too many password checks at once; try again shortly")
            }
            try await Task.sleep(for: .milliseconds(2))
        }
        defer { self.busy.withLock { $0 -= 1 } }
        return try await self.pool.runIfActive(work)
    }
}

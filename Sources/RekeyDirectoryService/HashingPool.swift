import NIOPosix
import RekeyCrypto
import RekeyRPC
import Synchronization

/// Runs scrypt on a bounded pool of threads of its own, off the event loops and off the database
/// thread, so a burst of sign-ins cannot starve other calls.
///
/// At most `threads` hashes run at once; a call that finds them all busy waits for a free one until
/// its deadline (or `maxWait`), then fails with RESOURCE_EXHAUSTED.
package final class HashingPool: Sendable {
    package let hasher: PasswordHasher
    private let pool: NIOThreadPool
    private let threads: Int
    private let busy = Mutex(0)
    private let maxWait: Duration

    package init(hasher: PasswordHasher, threads: Int, maxWait: Duration = .seconds(5)) {
        self.hasher = hasher
        self.threads = max(1, threads)
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
    package func verify(_ password: String, against stored: String?) async throws -> PasswordHasher.Verification {
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

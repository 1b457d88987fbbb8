/// Lifetimes, limits and retention of the reset-token service.
package struct TokenServiceConfiguration: Sendable {
    /// A rate limit: at most `limit` tokens per `window`.
    package struct Limit: Sendable, Hashable {
        package var limit: Int
        package var window: Duration

        package init(limit: Int, window: Duration) {
            self.limit = limit
            self.window = window
        }
    }

    package var resetLifetime: Duration
    package var verificationLifetime: Duration
    /// The longest lifetime a caller may ask for.
    package var maxLifetime: Duration
    /// Per user and purpose.
    package var perUser: Limit
    /// Per client address, for requests users make themselves.
    package var perClientAddress: Limit
    /// Per admin, for tokens admins send.
    package var perAdmin: Limit
    /// How long used, expired and revoked tokens and the history are kept for diagnosis.
    package var retention: Duration
    /// How often the retention purge runs.
    package var purgeInterval: Duration

    package init(
        resetLifetime: Duration = .seconds(30 * 60),
        verificationLifetime: Duration = .seconds(24 * 3600),
        maxLifetime: Duration = .seconds(72 * 3600),
        perUser: Limit = Limit(limit: 5, window: .seconds(3600)),
        perClientAddress: Limit = Limit(limit: 20, window: .seconds(3600)),
        perAdmin: Limit = Limit(limit: 30, window: .seconds(3600)),
        retention: Duration = .seconds(30 * 86400),
        purgeInterval: Duration = .seconds(3600)
    ) {
        self.resetLifetime = resetLifetime
        self.verificationLifetime = verificationLifetime
        self.maxLifetime = maxLifetime
        self.perUser = perUser
        self.perClientAddress = perClientAddress
        self.perAdmin = perAdmin
        self.retention = retention
        self.purgeInterval = purgeInterval
    }

    package static let defaults = TokenServiceConfiguration()

    /// Why these settings cannot work together, or `nil` when they can.
    package func problem() -> String? {
        if self.resetLifetime > self.maxLifetime {
            return "the reset lifetime (\(self.resetLifetime)) is longer than the maximum lifetime (\(self.maxLifetime))"
        }
        if self.verificationLifetime > self.maxLifetime {
            return "the verification lifetime (\(self.verificationLifetime)) is longer than the maximum lifetime (\(self.maxLifetime))"
        }
        let longestWindow = max(self.perUser.window, self.perClientAddress.window, self.perAdmin.window)
        if self.retention < max(longestWindow, self.maxLifetime) {
            return "the retention (\(self.retention)) must be at least the longest rate-limit window and the maximum lifetime, or limits and history would be forgotten early"
        }
        return nil
    }
}

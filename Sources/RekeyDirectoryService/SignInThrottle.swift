import RekeyClock

/// The sign-in limits as pure rules over the attempts already counted: per client address (a
/// fixed number per window) and per account (a few free attempts, then a delay that doubles with
/// each further failure: OWASP's "throttle, do not lock out").
///
/// Attempts are reserved before the password is hashed, so a burst can never get more passwords
/// checked than the limits allow; a successful sign-in gives its reservation back.
package struct SignInThrottle: Sendable, Hashable {
    /// Failed sign-ins allowed per client address within `window`.
    package var addressLimit: Int
    package var window: Duration
    /// Failed sign-ins per account (the typed address, known or not) before delays start.
    package var accountFreeAttempts: Int
    /// The first delay after the free attempts; each further failure doubles it, up to `window`.
    package var accountDelay: Duration

    package init(addressLimit: Int = 20, window: Duration = .seconds(900), accountFreeAttempts: Int = 5, accountDelay: Duration = .seconds(1)) {
        self.addressLimit = addressLimit
        self.window = window
        self.accountFreeAttempts = accountFreeAttempts
        self.accountDelay = accountDelay
    }

    /// Seconds until the address may try again, or nil when it may try now. `attempts` are the
    /// address's counted attempts inside the window, newest first, in Unix milliseconds.
    package func addressRetryAfter(attempts: [Int64], now: Int64) -> Int64? {
        guard attempts.count >= self.addressLimit, let oldest = attempts.prefix(self.addressLimit).last else { return nil }
        return Self.seconds(until: oldest + self.window.milliseconds, now: now)
    }

    /// Seconds until the account may be tried again, or nil when it may be tried now. `attempts`
    /// are the account's counted attempts inside the window, newest first.
    package func accountRetryAfter(attempts: [Int64], now: Int64) -> Int64? {
        let beyond = attempts.count - self.accountFreeAttempts
        guard beyond >= 0, let latest = attempts.first else { return nil }
        let delay = min(self.accountDelay.milliseconds.multipliedReportingOverflow(by: 1 << min(beyond, 40)).partialValue, self.window.milliseconds)
        let until = latest + max(delay, 0)
        return until > now ? Self.seconds(until: until, now: now) : nil
    }

    /// How many of an account's attempts the rule ever needs to see.
    package var accountAttemptsToRead: Int { self.accountFreeAttempts + 41 }

    private static func seconds(until: Int64, now: Int64) -> Int64 {
        max(1, (until - now + 999) / 1000)
    }
}

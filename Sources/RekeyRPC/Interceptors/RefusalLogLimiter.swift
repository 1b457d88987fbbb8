import Synchronization

/// Lets one refused call per peer address into the log per interval and counts the rest, so that
/// a client hammering a server with bad credentials cannot fill its disk (2,000 refusals once
/// wrote close to 1 MB of log in half a second).
package final class RefusalLogLimiter: Sendable {
    package let interval: Duration
    /// Addresses remembered at once; past it the oldest windows are forgotten.
    private let capacity: Int
    private let windows = Mutex<[String: Window]>([:])

    private struct Window {
        var start: ContinuousClock.Instant
        var suppressed: Int
    }

    package init(interval: Duration = .seconds(10), capacity: Int = 10_000) {
        self.interval = interval
        self.capacity = capacity
    }

    /// Whether to log this refusal, and how many from the same address went unlogged before it.
    package func admit(peer: String, now: ContinuousClock.Instant = .now) -> (log: Bool, suppressed: Int) {
        let key = Self.address(of: peer)
        return self.windows.withLock { windows in
            if var window = windows[key], now - window.start < self.interval {
                window.suppressed += 1
                windows[key] = window
                return (false, 0)
            }
            let suppressed = windows[key]?.suppressed ?? 0
            if windows[key] == nil, windows.count >= self.capacity {
                windows = windows.filter { now - $0.value.start < self.interval }
                if windows.count >= self.capacity { windows.removeAll(keepingCapacity: true) }
            }
            windows[key] = Window(start: now, suppressed: 0)
            return (true, suppressed)
        }
    }

    /// `[IPv4]192.0.2.1/192.0.2.1:5000` → without the port, so every connection of a peer counts as one.
    static func address(of peer: String) -> String {
        guard let colon = peer.lastIndex(of: ":") else { return peer }
        return String(peer[..<colon])
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Where the service reads the time; tests move a ``ManualClock``.
package protocol WallClock: Sendable {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    func nowMilliseconds() -> Int64
}

/// The system's wall clock.
package struct SystemWallClock: WallClock {
    package init() {}

    package func nowMilliseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}


/// A clock that only moves when told to.
package final class ManualClock: WallClock {
    private let now: Mutex<Int64>

    package init(nowMilliseconds: Int64 = 1_800_000_000_000) {
        self.now = Mutex(nowMilliseconds)
    }

    package func nowMilliseconds() -> Int64 {
        self.now.withLock { $0 }
    }

    package func advance(by duration: Duration) {
        self.now.withLock { $0 += duration.milliseconds }
    }
}

extension Duration {
    /// Whole milliseconds.
    package var milliseconds: Int64 {
        self.components.seconds * 1000 + self.components.attoseconds / 1_000_000_000_000_000
    }
}

import Foundation
import Synchronization

/// A flag one side opens and the other waits for: from a task, or from a thread that must block
/// (a database body holding its connection while a test looks at what else can run).
package final class Latch: Sendable {
    private let isOpen = Atomic<Bool>(false)

    package init() {}

    package func open() {
        self.isOpen.store(true, ordering: .sequentiallyConsistent)
    }

    package var opened: Bool { self.isOpen.load(ordering: .sequentiallyConsistent) }

    /// Blocks the calling thread until the latch opens or `limit` has passed (so that a test that
    /// goes wrong fails rather than hangs); whether it opened.
    package func waitBlocking(limit: Duration = .seconds(60)) -> Bool {
        let until = ContinuousClock.now + limit
        while !self.opened, ContinuousClock.now < until {
            Thread.sleep(forTimeInterval: 0.005)
        }
        return self.opened
    }

    /// Waits, without blocking a thread, until the latch opens.
    package func wait() async throws {
        while !self.opened {
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Work a request starts and does not wait for (the forgot-password flow past its answer), run by
/// a `Service` in the gateway's `ServiceGroup`, never by loose tasks. At most `capacity` jobs are
/// waiting or running; past that ``submit(_:)`` refuses and counts it. On shutdown the jobs
/// already accepted finish.
///
/// Metrics: `rekey_gateway_background_jobs` (waiting or running),
/// `rekey_gateway_background_overflow_total` (refused because full).
package final class BackgroundQueue: Service, Sendable {
    package typealias Job = @Sendable () async -> Void

    private let capacity: Int
    private let jobs: AsyncStream<Job>
    private let continuation: AsyncStream<Job>.Continuation
    private let pending = Atomic<Int>(0)
    private let gauge = Meter(label: "rekey_gateway_background_jobs")
    private let overflow = Counter(label: "rekey_gateway_background_overflow_total")
    private let logger: Logger

    package init(capacity: Int = 1024, logger: Logger) {
        self.capacity = capacity
        self.logger = logger
        (self.jobs, self.continuation) = AsyncStream.makeStream(of: Job.self)
    }

    /// Queues `job`; false (and counted) when `capacity` jobs are waiting or running already.
    package func submit(_ job: @escaping Job) -> Bool {
        let (after, _) = self.pending.add(1, ordering: .relaxed)
        guard after <= self.capacity else {
            self.pending.subtract(1, ordering: .relaxed)
            self.overflow.increment()
            return false
        }
        self.gauge.set(after)
        if case .terminated = self.continuation.yield(job) {
            self.pending.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    package func run() async {
        await withDiscardingTaskGroup { group in
            await withGracefulShutdownHandler {
                for await job in self.jobs {
                    group.addTask {
                        await job()
                        let (left, _) = self.pending.subtract(1, ordering: .relaxed)
                        self.gauge.set(left)
                    }
                }
            } onGracefulShutdown: {
                // Accept nothing new; what was accepted finishes before the group returns.
                self.continuation.finish()
            }
        }
        self.logger.debug("background queue stopped")
    }
}

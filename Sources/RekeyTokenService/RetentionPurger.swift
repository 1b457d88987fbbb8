import RekeyClock
import Logging
import ServiceLifecycle

/// Deletes tokens and history older than the retention, once at start and then every
/// `purgeInterval`, until the service shuts down.
package struct RetentionPurger: Service, CustomStringConvertible {
    private let store: TokenStore
    private let logger: Logger

    package init(store: TokenStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    /// Short, for ServiceLifecycle's start-up log line.
    package var description: String { "RetentionPurger" }

    package func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let (tokens, events) = try await self.store.purge()
                if tokens + events > 0 {
                    self.logger.info("purged old history", metadata: ["purge.tokens": "\(tokens)", "purge.events": "\(events)"])
                }
            } catch {
                self.logger.error("purging old history failed", metadata: ["error": "\(error)"])
            }
            try? await gracefulShutdown(orSleepFor: self.store.configuration.purgeInterval)
        }
    }
}

/// Sleeps for `duration`, returning early when a graceful shutdown starts.
private func gracefulShutdown(orSleepFor duration: Duration) async throws {
    try await cancelWhenGracefulShutdown {
        try await Task.sleep(for: duration)
    }
}

import Logging
import Metrics
import RekeyRPC
import RekeySQLite
import ServiceLifecycle

/// What a service does about a full or unwritable disk: calls that hit it answer
/// RESOURCE_EXHAUSTED naming the cause (``StorageErrorInterceptor``), health answers NOT_SERVING
/// while it lasts, and this watch tries a small write every `interval` until the disk takes writes
/// again, so the service recovers by itself.
///
/// Metric: `rekey_storage_unwritable` (1 while writes fail, else 0).
package struct StorageWatch: Service {
    let database: SQLiteDatabase
    let interval: Duration
    let logger: Logger

    package init(database: SQLiteDatabase, interval: Duration = .seconds(2), logger: Logger) {
        self.database = database
        self.interval = interval
        self.logger = logger
    }

    package func run() async throws {
        let gauge = Gauge(label: "rekey_storage_unwritable")
        gauge.record(0)
        // Ends at once on SIGTERM: there is nothing of its own to finish.
        try? await cancelWhenGracefulShutdown {
            var reported: String?
            while !Task.isCancelled {
                let problem = await self.database.probeStorage()
                gauge.record(problem == nil ? 0 : 1)
                if let problem, reported == nil {
                    self.logger.error("storage cannot be written; answering NOT_SERVING until it can", metadata: ["storage.problem": "\(problem)"])
                } else if problem == nil, reported != nil {
                    self.logger.notice("storage takes writes again; serving")
                }
                reported = problem
                try await Task.sleep(for: self.interval)
            }
        }
    }
}

/// Turns a write that failed because the disk is full or unwritable into RESOURCE_EXHAUSTED with
/// a message that says so (instead of INTERNAL), so that callers and operators see the cause.
package struct StorageErrorInterceptor: ServerInterceptor {
    let service: String

    package init(service: String) {
        self.service = service
    }

    package func intercept(
        request: ServerRequest,
        context: ServerContext,
        next: @Sendable (ServerRequest, ServerContext) async throws -> ServerResponse
    ) async throws -> ServerResponse {
        do {
            return try await next(request, context)
        } catch let error as SQLiteError where error.isStorageProblem {
            context.logger.error("a write failed: storage is full or unwritable", metadata: ["error": "\(error)"])
            throw RPCError(
                .resourceExhausted,
                "\(self.service) cannot store anything: its disk is full or unwritable; nothing was stored (operators: free space under data_dir)"
            )
        }
    }
}

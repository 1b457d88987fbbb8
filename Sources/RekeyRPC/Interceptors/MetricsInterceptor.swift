import CoreMetrics
import Synchronization

/// Records calls by method and status, their latency, and the calls in flight (swift-metrics).
///
/// Metrics: `rekey_rpc_server_requests_total{method,code}`,
/// `rekey_rpc_server_request_duration_seconds{method}`, `rekey_rpc_server_requests_in_flight`;
/// a method the server does not serve is `unknown` (names from the network are not labels).
package final class MetricsInterceptor: ServerInterceptor {
    private struct Key: Hashable {
        var method: String
        var code: RPCError.Code
    }

    private let factory: any MetricsFactory
    private let counters = Mutex<[Key: Counter]>([:])
    private let timers = Mutex<[String: Timer]>([:])
    private let inFlight: Meter

    /// - Parameter factory: where metrics go; the process-wide backend by default.
    package init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        self.inFlight = Meter(label: "rekey_rpc_server_requests_in_flight", factory: factory)
    }

    package func intercept(
        request: ServerRequest,
        context: ServerContext,
        next: @Sendable (ServerRequest, ServerContext) async throws -> ServerResponse
    ) async throws -> ServerResponse {
        let start = ContinuousClock.now
        self.inFlight.increment()
        defer { self.inFlight.decrement() }
        let method = context.methodLabel
        do {
            let response = try await next(request, context)
            self.record(method: method, code: .ok, since: start)
            return response
        } catch {
            let status = RPCDispatcher.rpcError(for: error, context: context)
            self.record(method: method, code: status.code, since: start)
            throw status
        }
    }

    private func record(method: String, code: RPCError.Code, since start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        let counter = self.counters.withLock { counters in
            let key = Key(method: method, code: code)
            if let counter = counters[key] { return counter }
            let counter = Counter(
                label: "rekey_rpc_server_requests_total",
                dimensions: [("method", method), ("code", code.description)],
                factory: self.factory
            )
            counters[key] = counter
            return counter
        }
        counter.increment()
        let timer = self.timers.withLock { timers in
            if let timer = timers[method] { return timer }
            let timer = Timer(label: "rekey_rpc_server_request_duration_seconds", dimensions: [("method", method)], factory: self.factory)
            timers[method] = timer
            return timer
        }
        timer.recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}

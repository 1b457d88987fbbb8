import Synchronization

/// The standard `rekey.health.v1.Health` service.
///
/// The empty service name stands for the whole server. A server marks everything NOT_SERVING when
/// it starts to drain, so load balancers stop sending before it refuses calls.
package final class HealthService: Rekey_Health_V1_Health.ServiceProtocol {
    package typealias Status = Rekey_Health_V1_HealthCheckResponse.ServingStatus

    private let statuses: Mutex<[String: Status]>
    /// Why the server cannot serve now (a full disk), checked at every health call; nil when fine.
    private let problem: @Sendable () -> String?

    /// A health service reporting SERVING for the server and for each of `services`, and
    /// NOT_SERVING for all of them while `problem` names one.
    package init(services: [String] = [], problem: @escaping @Sendable () -> String? = { nil }) {
        self.problem = problem
        // The health service answers for itself too.
        var statuses: [String: Status] = ["": .serving, Rekey_Health_V1_Health.name: .serving]
        for service in services {
            statuses[service] = .serving
        }
        self.statuses = Mutex(statuses)
    }

    package func setStatus(_ status: Status, forService service: String = "") {
        self.statuses.withLock { $0[service] = status }
    }

    /// The status reported for `service` (empty: the whole server).
    package func currentStatus(forService service: String = "") -> Status {
        self.statuses.withLock { $0[service] } ?? .serviceUnknown
    }

    /// Reports every known service as NOT_SERVING.
    package func markAllNotServing() {
        self.statuses.withLock { statuses in
            for key in statuses.keys {
                statuses[key] = .notServing
            }
        }
    }

    package func check(
        request: Rekey_Health_V1_HealthCheckRequest,
        context: ServerContext
    ) async throws -> Rekey_Health_V1_HealthCheckResponse {
        var response = Rekey_Health_V1_HealthCheckResponse()
        response.status = self.currentStatus(forService: request.service)
        if response.status == .serving, self.problem() != nil {
            response.status = .notServing
        }
        return response
    }
}

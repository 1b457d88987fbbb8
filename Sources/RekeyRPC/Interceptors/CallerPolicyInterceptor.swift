import CoreMetrics
import Logging

/// Which workloads may call which methods of a server, by the identity in their certificate
/// (mutual TLS: `spiffe://<trust domain>/<workload>`). What is not granted is refused.
package struct CallerPolicy: Sendable {
    /// Fully qualified method → the workloads that may call it.
    private let allowed: [String: Set<String>]

    /// - Parameter grants: workload → the methods it may call.
    package init(_ grants: [String: [MethodDescriptor]]) {
        var allowed: [String: Set<String>] = [:]
        for (workload, methods) in grants {
            for method in methods {
                allowed[method.fullyQualifiedMethod, default: []].insert(workload)
            }
        }
        self.allowed = allowed
    }

    package func allows(_ workload: String, _ method: MethodDescriptor) -> Bool {
        self.allowed[method.fullyQualifiedMethod]?.contains(workload) == true
    }

    /// The workloads granted anything, for the start-up log.
    package var workloads: [String] {
        Array(Set(self.allowed.values.flatMap { $0 })).sorted()
    }
}

/// Refuses a call whose caller (the workload its verified client certificate names) the
/// ``CallerPolicy`` does not allow to call that method: PERMISSION_DENIED, with a message that
/// names neither the policy nor who would be allowed. Health is open to every peer that passed
/// the TLS handshake (it holds a certificate from the deployment's CA).
///
/// Metric: `rekey_rpc_server_calls_denied_total{method}`.
package struct CallerPolicyInterceptor: ServerInterceptor {
    private let policy: CallerPolicy
    private let exemptServices: Set<String>
    /// One log line per caller address and interval; the rest are counted.
    private let refusals: RefusalLogLimiter

    package init(policy: CallerPolicy, exemptServices: Set<String> = [Rekey_Health_V1_Health.name], refusals: RefusalLogLimiter = RefusalLogLimiter()) {
        self.policy = policy
        self.exemptServices = exemptServices
        self.refusals = refusals
    }

    package func intercept(
        request: ServerRequest,
        context: ServerContext,
        next: @Sendable (ServerRequest, ServerContext) async throws -> ServerResponse
    ) async throws -> ServerResponse {
        if self.exemptServices.contains(context.method.service) {
            return try await next(request, context)
        }
        guard let workload = context.peerIdentity else {
            // Only reachable on a server without TLS, which does not install this interceptor.
            throw RPCError(.unauthenticated, "a client certificate is required")
        }
        guard self.policy.allows(workload, context.method) else {
            Counter(label: "rekey_rpc_server_calls_denied_total", dimensions: [("method", context.methodLabel)]).increment()
            let (log, suppressed) = self.refusals.admit(peer: context.peer)
            if log {
                var metadata: Logger.Metadata = ["rpc.peer": "\(context.peer)", "rpc.peer_identity": "\(workload)"]
                if suppressed > 0 { metadata["rpc.refusals_not_logged"] = "\(suppressed)" }
                context.logger.warning("refused a call this caller may not make", metadata: metadata)
            }
            throw RPCError(.permissionDenied, "this caller may not call \(context.method.fullyQualifiedMethod)")
        }
        return try await next(request, context)
    }
}

import Logging

/// Refuses calls that do not carry one of the deployment's service credentials.
///
/// The credential travels as `authorization: Bearer <credential>`. More than one credential can be
/// accepted at a time so that it can be rotated without downtime: add the new one everywhere,
/// switch callers, then drop the old one. Health checks need no credential.
package struct ServiceCredentialInterceptor: ServerInterceptor {
    private let accepted: [[UInt8]]
    private let exemptServices: Set<String>
    /// A peer hammering with bad credentials gets one warning per interval, not one per call.
    private let refusals = RefusalLogLimiter()

    /// - Parameters:
    ///   - accepted: the credentials to accept; must not be empty.
    ///   - exemptServices: services callable without a credential (by default, health).
    package init(accepted: [String], exemptServices: Set<String> = [Rekey_Health_V1_Health.name]) {
        precondition(!accepted.isEmpty, "at least one service credential is required")
        self.accepted = accepted.map { Array($0.utf8) }
        self.exemptServices = exemptServices
    }

    package func intercept(
        request: ServerRequest,
        context: ServerContext,
        next: @Sendable (ServerRequest, ServerContext) async throws -> ServerResponse
    ) async throws -> ServerResponse {
        if self.exemptServices.contains(context.method.service) {
            return try await next(request, context)
        }
        var header: String?
        for entry in context.metadata where entry.key == MetadataKey.authorization {
            guard header == nil else {
                self.warn("refused a call with more than one authorization entry", context)
                throw RPCError(.unauthenticated, "send exactly one authorization entry")
            }
            header = entry.value
        }
        guard var header else {
            self.warn("refused a call without a service credential", context)
            throw RPCError(.unauthenticated, "a service credential is required")
        }
        let matched = header.withUTF8 { bytes in
            let prefix: StaticString = "Bearer "
            let hasPrefix = bytes.starts(with: UnsafeBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount))
            let presented = hasPrefix ? UnsafeBufferPointer(rebasing: bytes[prefix.utf8CodeUnitCount...]) : UnsafeBufferPointer(start: nil, count: 0)
            // Compare against every accepted credential, without stopping early, in constant time.
            var matched = false
            for credential in self.accepted where Self.constantTimeEquals(presented, credential) {
                matched = true
            }
            return matched
        }
        guard matched else {
            self.warn("refused a call with a wrong service credential", context)
            throw RPCError(.unauthenticated, "the service credential is not valid")
        }
        return try await next(request, context)
    }

    private func warn(_ message: Logger.Message, _ context: ServerContext) {
        let (log, suppressed) = self.refusals.admit(peer: context.peer)
        guard log else { return }
        var metadata: Logger.Metadata = ["rpc.peer": "\(context.peer)"]
        if suppressed > 0 { metadata["rpc.refusals_not_logged"] = "\(suppressed)" }
        context.logger.warning(message, metadata: metadata)
    }

    /// Compares two byte strings in time that depends only on their lengths.
    package static func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        lhs.withUnsafeBufferPointer { Self.constantTimeEquals($0, rhs) }
    }

    private static func constantTimeEquals(_ lhs: UnsafeBufferPointer<UInt8>, _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for index in 0..<lhs.count {
            difference |= lhs[index] ^ rhs[index]
        }
        return difference == 0
    }
}

/// Names one RPC method: `/rekey.health.v1.Health/Check` on the wire.
package struct MethodDescriptor: Hashable, Sendable, CustomStringConvertible {
    /// The fully qualified service, such as `rekey.health.v1.Health`.
    package let service: String
    /// The method, such as `Check`.
    package let method: String
    /// The name that travels in the request envelope.
    package let fullyQualifiedMethod: String

    package init(service: String, method: String) {
        self.service = service
        self.method = method
        self.fullyQualifiedMethod = "/\(service)/\(method)"
    }

    package var description: String { self.fullyQualifiedMethod }
}

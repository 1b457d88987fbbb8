/// Code that runs around every call a server handles: authentication, logging, metrics.
///
/// Interceptors run in the order they are given to the server, the first outermost. They run
/// before the method is looked up, so an unauthenticated caller learns nothing about which
/// methods exist.
package protocol ServerInterceptor: Sendable {
    func intercept(
        request: ServerRequest,
        context: ServerContext,
        next: @Sendable (ServerRequest, ServerContext) async throws -> ServerResponse
    ) async throws -> ServerResponse
}

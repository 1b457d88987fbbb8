import Hummingbird
import NIOCore
import RekeyDirectoryAPI

/// The request context of the gateway: who is calling from where, the request id that goes with
/// every RPC this request makes, and who authentication found (API key or session).
package struct GatewayContext: RequestContext, RemoteAddressRequestContext {
    package var coreContext: CoreRequestContextStorage
    package let remoteAddress: SocketAddress?
    package var requestID: String = ""
    /// The end user's address: the TCP peer's, or, behind a trusted proxy, the last one it added
    /// to `X-Forwarded-For`.
    package var clientAddress: String
    /// The staff member an API key belongs to (`APIKeyAuthenticator`), on admin API routes.
    package var admin: AdminActor?
    /// The signed-in user of the session cookie (`SessionAuthenticator`), on pages.
    package var sessionUser: Rekey_Directory_V1_User?

    package init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
        self.clientAddress = source.channel.remoteAddress?.ipAddress ?? ""
    }
}

import RekeyRPC
import RekeyTokensAPI

extension TokenService {
    /// Who may call what over mutual TLS: the gateway, every method (it uses them all). No other
    /// service calls the reset-token service.
    package static let callers = CallerPolicy([
        "gateway": [
            Method.IssueToken.descriptor, Method.PeekToken.descriptor, Method.RedeemToken.descriptor, Method.RevokeUserTokens.descriptor,
            Method.ListUserTokens.descriptor, Method.ListUserEvents.descriptor, Method.GetRateLimitStatus.descriptor,
        ],
    ])

    private typealias Method = Rekey_Tokens_V1_Tokens.Method
}

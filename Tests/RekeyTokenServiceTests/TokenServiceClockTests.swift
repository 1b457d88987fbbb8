import Logging
import RekeyClock
import RekeyRPC
import RekeyRPCNIO
import RekeySQLite
import RekeyTesting
import RekeyTokenService
import RekeyTokensAPI
import Testing

/// Expiry through the RPC, with the service's clock moved by the test.
@Suite("Token expiry over RPC")
struct TokenServiceClockTests {
    @Test("a token peeks and redeems until its lifetime passes, then answers NOT_FOUND")
    func expiryOverRPC() async throws {
        let folder = try TemporaryFolder()
        let clock = ManualClock()
        let database = try SQLiteDatabase(path: folder.path + "/tokens.sqlite", migrations: SQLiteTokenRepository.migrations)
        let service = TokenService(store: TokenStore(configuration: .defaults, clock: clock, repository: SQLiteTokenRepository(database: database)))
        try await withRPCServer(services: [service]) { _, port in
            try await withRPCClient(port: port) { client in
                let tokens = Rekey_Tokens_V1_Tokens.Client(wrapping: client)
                var issue = Rekey_Tokens_V1_IssueTokenRequest()
                issue.purpose = .passwordReset
                issue.userID = "user-1"
                issue.lifetimeSeconds = 600
                let issued = try await tokens.issueToken(issue)
                #expect(issued.info?.expiresAtUnixMs == clock.nowMilliseconds() + 600_000)

                var peek = Rekey_Tokens_V1_PeekTokenRequest()
                peek.token = issued.token
                peek.purpose = .passwordReset
                clock.advance(by: .seconds(599))
                #expect(try await tokens.peekToken(peek).info?.state == .live)
                clock.advance(by: .seconds(1))
                let error = await #expect(throws: RPCError.self) { try await tokens.peekToken(peek) }
                #expect(error?.code == .notFound)

                var list = Rekey_Tokens_V1_ListUserTokensRequest()
                list.userID = "user-1"
                #expect(try await tokens.listUserTokens(list).tokens.first?.state == .expired)
            }
        }
    }
}

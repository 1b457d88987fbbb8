import Foundation
import RekeyDirectoryAPI
import RekeyNotifierAPI
import RekeyRPC
import RekeyRPCNIO
import RekeyGatewayTesting
import RekeyTestTraits
import RekeyTesting
import RekeyTokensAPI
import Testing

/// Every integer field of every RPC method, sent what a buggy or hostile caller sends, through the
/// real services: each answer is INVALID_ARGUMENT naming the field, and the service answers health
/// afterwards.
@Suite("Integer fields over RPC, through the real services", .serialized, .processSlots)
struct RPCBoundsTests {
    static let absurd: [UInt32] = [UInt32.max, 2_147_483_648, 100_001]

    func expectRefused(_ field: String, _ call: () async throws -> Void) async {
        let error = await #expect(throws: RPCError.self) { try await call() }
        #expect(error?.code == .invalidArgument, "\(field): \(String(describing: error))")
        #expect(error?.message.contains(field) == true, "the message names \(field): \(error?.message ?? "")")
    }

    @Test("page sizes, limits, lifetimes and windows out of range are refused by name; the services keep answering")
    func integerFields() async throws {
        let system = try await RekeySystem.start()
        defer { system.stopInBackground() }
        // As the gateway would call: with its certificate.
        let tls = try system.gatewayTLS()
        try await withRPCClient(port: system.directory.port, credential: nil, configure: { $0.tls = tls; $0.serverIdentity = "directory" }) { client in
            let directory = Rekey_Directory_V1_Directory.Client(wrapping: client)
            for value in Self.absurd {
                var search = Rekey_Directory_V1_SearchUsersRequest()
                search.scope = .all
                search.pageSize = value
                await self.expectRefused("page_size") { _ = try await directory.searchUsers(search) }
                var list = Rekey_Directory_V1_ListUsersRequest()
                list.pageSize = value
                await self.expectRefused("page_size") { _ = try await directory.listUsers(list) }
                var audit = Rekey_Directory_V1_ListAuditRecordsRequest()
                audit.pageSize = value
                await self.expectRefused("page_size") { _ = try await directory.listAuditRecords(audit) }
                var key = Rekey_Directory_V1_CreateApiKeyRequest()
                key.userID = "u_00000000000000000000000000000000"
                key.name = "x"
                key.lifetimeDays = value
                await self.expectRefused("lifetime_days") { _ = try await directory.createApiKey(key) }
                var append = Rekey_Directory_V1_AppendImportRequest()
                append.importID = "i_00000000000000000000000000000000"
                append.sequence = value
                await self.expectRefused("sequence") { _ = try await directory.appendImport(append) }
            }
            let health = try await Rekey_Health_V1_Health.Client(wrapping: client).check(.init())
            #expect(health.status == .serving)
        }
        try await withRPCClient(port: system.tokens.port, credential: nil, configure: { $0.tls = tls; $0.serverIdentity = "reset-token" }) { client in
            let tokens = Rekey_Tokens_V1_Tokens.Client(wrapping: client)
            for value in Self.absurd {
                var list = Rekey_Tokens_V1_ListUserTokensRequest()
                list.userID = "u_1"
                list.pageSize = value
                await self.expectRefused("page_size") { _ = try await tokens.listUserTokens(list) }
                var events = Rekey_Tokens_V1_ListUserEventsRequest()
                events.userID = "u_1"
                events.limit = value
                await self.expectRefused("limit") { _ = try await tokens.listUserEvents(events) }
            }
            // Past the longest lifetime (72 h by default).
            for value in [UInt32.max, 2_147_483_648, 72 * 3600 + 1] as [UInt32] {
                var issue = Rekey_Tokens_V1_IssueTokenRequest()
                issue.purpose = .passwordReset
                issue.userID = "u_1"
                issue.lifetimeSeconds = value
                await self.expectRefused("lifetime_seconds") { _ = try await tokens.issueToken(issue) }
            }
            let health = try await Rekey_Health_V1_Health.Client(wrapping: client).check(.init())
            #expect(health.status == .serving)
        }
        try await withRPCClient(port: system.notifier.port, credential: nil, configure: { $0.tls = tls; $0.serverIdentity = "notifier" }) { client in
            let notifier = Rekey_Notifier_V1_Notifier.Client(wrapping: client)
            for value in Self.absurd {
                var messages = Rekey_Notifier_V1_ListMessagesRequest()
                messages.userID = "u_1"
                messages.pageSize = value
                await self.expectRefused("page_size") { _ = try await notifier.listMessages(messages) }
                var suppressions = Rekey_Notifier_V1_ListSuppressionsRequest()
                suppressions.pageSize = value
                await self.expectRefused("page_size") { _ = try await notifier.listSuppressions(suppressions) }
            }
            for window: Int64 in [.min, -1, .max, 30 * 86_400_000 + 1] {
                var stats = Rekey_Notifier_V1_GetQueueStatsRequest()
                stats.windowMs = window
                await self.expectRefused("window_ms") { _ = try await notifier.getQueueStats(stats) }
            }
            let health = try await Rekey_Health_V1_Health.Client(wrapping: client).check(.init())
            #expect(health.status == .serving)
        }
    }
}

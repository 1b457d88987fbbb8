import Foundation
import Logging
import RekeyRPC
import RekeyRPCNIO
import RekeyTestTraits
import RekeyTesting
import RekeyTokensAPI
import Testing

/// Drives the real `rekey-reset-token` executable over RPC, as the gateway will.
@Suite("rekey-reset-token, the executable", .processSlots)
struct ResetTokenExecutableTests {
    static let credential = "reset-token-test-credential-0123"

    static func start(dataDir: String, extra: [String] = []) async throws -> ServiceProcess {
        try await ServiceProcess.start(
            "rekey-reset-token",
            arguments: ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir] + extra,
            environment: ["REKEY_RESET_TOKEN_CREDENTIALS": Self.credential]
        )
    }

    func withTokens<R>(_ process: ServiceProcess, _ body: (Rekey_Tokens_V1_Tokens.Client) async throws -> R) async throws -> R {
        try await withRPCClient(port: process.port, credential: Self.credential) { client in
            try await body(Rekey_Tokens_V1_Tokens.Client(wrapping: client))
        }
    }

    static func issueRequest(user: String = "user-1", address: String = "192.0.2.1") -> Rekey_Tokens_V1_IssueTokenRequest {
        var request = Rekey_Tokens_V1_IssueTokenRequest()
        request.purpose = .passwordReset
        request.userID = user
        request.clientAddress = address
        return request
    }

    @Test("issue, peek, redeem, and a second redeem fails; SIGTERM stops it cleanly")
    func lifecycle() async throws {
        let folder = try TemporaryFolder()
        let process = try await Self.start(dataDir: folder.path)
        try await self.withTokens(process) { tokens in
            let issued = try await tokens.issueToken(Self.issueRequest())
            #expect(issued.info?.state == .live)

            var peek = Rekey_Tokens_V1_PeekTokenRequest()
            peek.token = issued.token
            peek.purpose = .passwordReset
            #expect(try await tokens.peekToken(peek).info?.tokenID == issued.info?.tokenID)

            var redeem = Rekey_Tokens_V1_RedeemTokenRequest()
            redeem.token = issued.token
            redeem.purpose = .passwordReset
            redeem.clientAddress = "192.0.2.1"
            #expect(try await tokens.redeemToken(redeem).info?.state == .used)
            let again = await #expect(throws: RPCError.self) { try await tokens.redeemToken(redeem) }
            #expect(again?.code == .notFound)
            let peekAgain = await #expect(throws: RPCError.self) { try await tokens.peekToken(peek) }
            #expect(peekAgain?.code == .notFound)
        }
        #expect(await process.stop() == 0)
        #expect(process.log.contains("rpc server stopped"))
    }

    @Test("of 50 concurrent redeems of one token exactly one succeeds")
    func concurrentRedeems() async throws {
        let folder = try TemporaryFolder()
        let process = try await Self.start(dataDir: folder.path)
        try await self.withTokens(process) { tokens in
            let issued = try await tokens.issueToken(Self.issueRequest())
            var redeem = Rekey_Tokens_V1_RedeemTokenRequest()
            redeem.token = issued.token
            redeem.purpose = .passwordReset
            let outcomes = try await withThrowingTaskGroup(of: RPCError.Code.self) { group in
                for _ in 0..<50 {
                    group.addTask { [redeem] in
                        do {
                            _ = try await tokens.redeemToken(redeem)
                            return .ok
                        } catch let error as RPCError {
                            return error.code
                        }
                    }
                }
                return try await group.reduce(into: [RPCError.Code]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 == .ok }.count == 1)
            #expect(outcomes.filter { $0 == .notFound }.count == 49)
        }
        await process.stop()
    }

    @Test("revoking kills every live token of the user")
    func revoke() async throws {
        let folder = try TemporaryFolder()
        let process = try await Self.start(dataDir: folder.path)
        try await self.withTokens(process) { tokens in
            let issued = [try await tokens.issueToken(Self.issueRequest()), try await tokens.issueToken(Self.issueRequest())]
            var revoke = Rekey_Tokens_V1_RevokeUserTokensRequest()
            revoke.userID = "user-1"
            revoke.reason = "password changed"
            #expect(try await tokens.revokeUserTokens(revoke).revoked == 2)
            for token in issued {
                var peek = Rekey_Tokens_V1_PeekTokenRequest()
                peek.token = token.token
                peek.purpose = .passwordReset
                await #expect(throws: RPCError.self) { try await tokens.peekToken(peek) }
            }
            var list = Rekey_Tokens_V1_ListUserTokensRequest()
            list.userID = "user-1"
            let listed = try await tokens.listUserTokens(list)
            #expect(listed.tokens.map(\.state) == [.revoked, .revoked])
            #expect(listed.tokens.allSatisfy { $0.revokeReason == "password changed" })
        }
        await process.stop()
    }

    @Test("a limit that was hit is still hit after the process restarts")
    func limitsSurviveRestarts() async throws {
        let folder = try TemporaryFolder()
        var process = try await Self.start(dataDir: folder.path, extra: ["--limit-per-user", "3"])
        try await self.withTokens(process) { tokens in
            for _ in 0..<3 {
                _ = try await tokens.issueToken(Self.issueRequest())
            }
            let refused = await #expect(throws: RPCError.self) { try await tokens.issueToken(Self.issueRequest()) }
            #expect(refused?.code == .resourceExhausted)
            #expect(Int(refused?.trailers[MetadataKey.retryAfterSeconds] ?? "") ?? 0 > 3500)
        }
        #expect(await process.stop() == 0)

        process = try await Self.start(dataDir: folder.path, extra: ["--limit-per-user", "3"])
        try await self.withTokens(process) { tokens in
            let refused = await #expect(throws: RPCError.self) { try await tokens.issueToken(Self.issueRequest()) }
            #expect(refused?.code == .resourceExhausted)
            var status = Rekey_Tokens_V1_GetRateLimitStatusRequest()
            status.userID = "user-1"
            status.purpose = .passwordReset
            let limits = try await tokens.getRateLimitStatus(status).limits
            #expect(limits.count == 1)
            #expect(limits.first?.used == 3)
            #expect(limits.first?.limit == 3)
            #expect(limits.first?.nextAllowedAtUnixMs ?? 0 > 0)
            var events = Rekey_Tokens_V1_ListUserEventsRequest()
            events.userID = "user-1"
            let kinds = try await tokens.listUserEvents(events).events.map(\.kind)
            #expect(kinds.filter { $0 == .rateLimited }.count == 2)
            #expect(kinds.filter { $0 == .issued }.count == 3)
        }
        await process.stop()
    }

    @Test("the database files never contain a raw token")
    func noRawTokensOnDisk() async throws {
        let folder = try TemporaryFolder()
        let process = try await Self.start(dataDir: folder.path)
        let tokens: [String] = try await self.withTokens(process) { client in
            var issued: [String] = []
            for index in 0..<5 {
                issued.append(try await client.issueToken(Self.issueRequest(user: "user-\(index)")).token)
            }
            return issued
        }
        await process.stop()
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path)
        #expect(files.contains("tokens.sqlite"))
        for file in files {
            let data = try Data(contentsOf: URL(fileURLWithPath: folder.path + "/" + file))
            let text = String(decoding: data, as: UTF8.self)
            for token in tokens {
                #expect(!text.contains(token), "\(file) holds a raw token")
            }
        }
    }

    @Test("bad input gets a clear status and writes nothing")
    func badInput() async throws {
        let folder = try TemporaryFolder()
        let process = try await Self.start(dataDir: folder.path)
        try await self.withTokens(process) { tokens in
            var noPurpose = Self.issueRequest()
            noPurpose.purpose = .unspecified
            var unknownPurpose = Self.issueRequest()
            unknownPurpose.purpose = .unrecognized(9)
            var noUser = Self.issueRequest()
            noUser.userID = ""
            var tooLong = Self.issueRequest()
            tooLong.lifetimeSeconds = 100 * 3600
            for request in [noPurpose, unknownPurpose, noUser, tooLong] {
                let error = await #expect(throws: RPCError.self) { try await tokens.issueToken(request) }
                #expect(error?.code == .invalidArgument)
            }
            for token in ["", "x", String(repeating: "*", count: 43)] {
                var peek = Rekey_Tokens_V1_PeekTokenRequest()
                peek.token = token
                peek.purpose = .passwordReset
                let error = await #expect(throws: RPCError.self) { try await tokens.peekToken(peek) }
                #expect(error?.code == .invalidArgument)
            }
            var list = Rekey_Tokens_V1_ListUserTokensRequest()
            list.userID = "user-1"
            list.pageToken = "tampered"
            let error = await #expect(throws: RPCError.self) { try await tokens.listUserTokens(list) }
            #expect(error?.code == .invalidArgument)
            var events = Rekey_Tokens_V1_ListUserEventsRequest()
            events.userID = "user-1"
            let listed = try await tokens.listUserEvents(events)
            #expect(listed.events.isEmpty)
        }
        await process.stop()
    }

    @Test("a wrong credential is refused, and health needs none")
    func credentials() async throws {
        let folder = try TemporaryFolder()
        let process = try await Self.start(dataDir: folder.path)
        try await withRPCClient(port: process.port, credential: "wrong-credential-0123456789") { client in
            let error = await #expect(throws: RPCError.self) {
                try await Rekey_Tokens_V1_Tokens.Client(wrapping: client).issueToken(Self.issueRequest())
            }
            #expect(error?.code == .unauthenticated)
            var request = Rekey_Health_V1_HealthCheckRequest()
            request.service = Rekey_Tokens_V1_Tokens.name
            let health = try await Rekey_Health_V1_Health.Client(wrapping: client).check(request)
            #expect(health.status == .serving)
        }
        await process.stop()
    }

    @Test("start-up refuses bad settings with a message naming the key")
    func badSettings() async throws {
        let folder = try TemporaryFolder()
        let cases: [([String], [String: String], String)] = [
            (["--listen", "nowhere"], ["REKEY_RESET_TOKEN_CREDENTIALS": Self.credential], "`listen` (from flag --listen)"),
            ([], [:], "missing setting `credentials`"),
            ([], ["REKEY_RESET_TOKEN_CREDENTIALS": "short"], "at least 16 characters"),
            (["--reset-lifetime", "0s"], ["REKEY_RESET_TOKEN_CREDENTIALS": Self.credential], "`reset_lifetime`"),
            ([], ["REKEY_RESET_TOKEN_CREDENTIALS": Self.credential, "REKEY_RESET_TOKEN_LIMIT_PER_USER": "lots"], "REKEY_RESET_TOKEN_LIMIT_PER_USER"),
            (["--data-dir", "/proc/forbidden"], ["REKEY_RESET_TOKEN_CREDENTIALS": Self.credential], "data_dir"),
            (["--metrics-listen", "everywhere"], ["REKEY_RESET_TOKEN_CREDENTIALS": Self.credential], "`metrics_listen` (from flag --metrics-listen)"),
        ]
        for (arguments, environment, expected) in cases {
            let (status, output) = try await offPool { try ServiceProcess.run("rekey-reset-token", ["serve", "--data-dir", folder.path] + arguments, environment: environment) }
            #expect(status != 0)
            #expect(output.contains(expected), "for \(arguments) \(environment): \(output)")
        }
    }

    @Test("a metrics port that is taken stops the start-up with a message naming metrics_listen, before it announces that it listens")
    func metricsPortTaken() async throws {
        let folder = try TemporaryFolder()
        let first = try await ServiceProcess.start(
            "rekey-reset-token", arguments: ["serve", "--listen", "127.0.0.1:0", "--data-dir", folder.path],
            environment: ["REKEY_RESET_TOKEN_CREDENTIALS": Self.credential]
        )
        defer { first.stopInBackground() }
        let (status, output) = try await offPool { try ServiceProcess.run(
            "rekey-reset-token", ["serve", "--listen", "127.0.0.1:0", "--data-dir", folder.path + "/second", "--metrics-listen", "127.0.0.1:\(first.port)"],
            environment: ["REKEY_RESET_TOKEN_CREDENTIALS": Self.credential]
        ) }
        #expect(status != 0)
        #expect(output.contains("cannot listen for metrics on 127.0.0.1:\(first.port) (metrics_listen)"), "\(output)")
        #expect(!output.contains("rpc server listening"), "it never announced that it listens: \(output)")
    }
}

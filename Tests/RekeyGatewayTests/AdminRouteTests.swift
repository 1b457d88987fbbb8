import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import RekeyAdminModel
import RekeyGatewayTesting
import Testing

@testable import RekeyGateway

/// The admin API's routes over the in-process system (no sockets, no processes): every route's
/// authentication and permission, its error answers, the OpenAPI document it is described by, and
/// the shapes the CLI decodes.
@Suite("Admin API routes, in-process")
struct AdminRouteTests {
    /// A route's path with its parameters filled in.
    static func concrete(_ path: String, id: String = "u_doesnotexist") -> String {
        "/api/admin/v1/" + path.split(separator: "/").map { $0.hasPrefix(":") ? (id) : String($0) }.joined(separator: "/")
    }

    static func routes() async throws -> (InProcessSystem, [AdminRoute]) {
        let system = try await InProcessSystem()
        return (system, AdminRoutes.all(AdminOperations(flows: system.flows)))
    }

    static func error(_ response: TestResponse) throws -> Admin.ErrorBody {
        try Admin.decoder().decode(Admin.ErrorBody.self, from: Data(buffer: response.body))
    }

    @Test("without an API key every staff route is a 401 saying how to send one; with a bad key a 401 saying so")
    func authentication() async throws {
        let (system, routes) = try await Self.routes()
        try await system.application.test(.router) { client in
            for route in routes where route.access != .open {
                let path = Self.concrete(route.path)
                let bare = try await client.execute(uri: path, method: route.method)
                #expect(bare.status == .unauthorized, "\(route.method) \(route.path)")
                #expect(try Self.error(bare).error.code == "unauthenticated")
                let wrong = try await client.execute(uri: path, method: route.method, headers: [.authorization: "Bearer rk_not-a-key"])
                #expect(wrong.status == .unauthorized, "\(route.method) \(route.path)")
                #expect(try Self.error(wrong).error.message.contains("unknown, revoked or expired"))
            }
        }
    }

    @Test("an agent (staff without users.manage) reads, and is refused every route that changes something, naming the permission")
    func permissions() async throws {
        let (system, routes) = try await Self.routes()
        let agent = try await system.staff("Andy Agent", role: "agent", email: "andy@example.com")
        let customer = try await system.staff("Carla Customer", role: "customer", email: "carla@example.com")
        try await system.application.test(.router) { client in
            for route in routes {
                guard case .staff(let permission) = route.access else { continue }
                let response = try await client.execute(
                    uri: Self.concrete(route.path, id: agent.id), method: route.method, headers: [.authorization: "Bearer \(agent.key)"]
                )
                if permission == .manageUsers {
                    #expect(response.status == .forbidden, "\(route.method) \(route.path)")
                    let body = try Self.error(response)
                    #expect(body.error.code == "permission_denied")
                    #expect(body.error.message.contains("users.manage"))
                } else {
                    #expect(response.status != .forbidden && response.status != .unauthorized, "\(route.method) \(route.path): \(response.status)")
                }
                #expect(response.status.code < 500, "\(route.method) \(route.path): \(response.status)")
                let notStaff = try await client.execute(uri: Self.concrete(route.path), method: route.method, headers: [.authorization: "Bearer \(customer.key)"])
                #expect(notStaff.status == .forbidden, "\(route.method) \(route.path): customers are not staff")
            }
        }
    }

    @Test("the owner gets no 5xx from any route with made-up ids, and every error body is the documented shape")
    func noServerErrors() async throws {
        let (system, routes) = try await Self.routes()
        try await system.application.test(.router) { client in
            for route in routes {
                let response = try await client.execute(
                    uri: Self.concrete(route.path, id: "x_made_up"), method: route.method, headers: [.authorization: "Bearer \(system.ownerKey)"]
                )
                #expect(response.status.code < 500, "\(route.method) \(route.path): \(response.status) \(String(buffer: response.body))")
                if response.status.code >= 400 {
                    #expect(throws: Never.self, "\(route.method) \(route.path)") { try Self.error(response) }
                }
            }
        }
    }

    @Test("a service that is down: 503 naming it (from the transport the call went through), with Retry-After")
    func unavailableNamesTheService() async throws {
        let system = try await InProcessSystem(stopped: ["notifier"])
        try await system.application.test(.router) { client in
            let response = try await client.execute(
                uri: "/api/admin/v1/users/\(system.ownerID)/messages", method: .get, headers: [.authorization: "Bearer \(system.ownerKey)"]
            )
            #expect(response.status == .serviceUnavailable)
            #expect(response.headers[.retryAfter] == "30")
            let body = try Self.error(response)
            #expect(body.error.code == "unavailable")
            #expect(body.error.message.contains("rekey-notifier (in-process) is not answering"))
        }
    }

    @Test("an admin reset is one HTTP call and four RPCs for an id, five for an address; the user is fetched once")
    func resetInOneCall() async throws {
        let system = try await InProcessSystem()
        try await system.application.test(.router) { client in
            let auth: HTTPFields = [.authorization: "Bearer \(system.ownerKey)", .contentType: "application/json"]
            let created = try await client.execute(
                uri: "/api/admin/v1/users", method: .post, headers: auth, body: ByteBuffer(string: #"{"name":"Jane Doe","email":"jane@example.com","role":"customer"}"#)
            )
            let user = try Admin.decoder().decode(Admin.User.self, from: Data(buffer: created.body))
            _ = system.takeCalls()
            let sent = try await client.execute(uri: "/api/admin/v1/users/\(user.id)/password-reset", method: .post, headers: auth)
            #expect(sent.status == .ok, "\(String(buffer: sent.body))")
            #expect(system.takeCalls() == ["Directory/AuthenticateApiKey", "Directory/GetUser", "Tokens/IssueToken", "Notifier/Enqueue"])
            let byAddress = try await client.execute(uri: "/api/admin/v1/users/jane%40example.com/password-reset", method: .post, headers: auth)
            #expect(byAddress.status == .ok, "\(String(buffer: byAddress.body))")
            #expect(system.takeCalls() == ["Directory/AuthenticateApiKey", "Directory/FindUserByEmail", "Directory/GetUser", "Tokens/IssueToken", "Notifier/Enqueue"])
            let answer = try Admin.decoder().decode(Admin.SentMail.self, from: Data(buffer: byAddress.body))
            #expect(answer.sentTo == "j***@example.com")
            #expect(answer.status == "queued")
        }
    }

    @Test("imports in several chunks: all-or-nothing, a bad last row writes nothing, over 8 MiB or 100,000 rows is 413, a retried key gives the first outcome")
    func largeImports() async throws {
        let system = try await InProcessSystem()
        try await system.application.test(.router) { client in
            let auth: HTTPFields = [.authorization: "Bearer \(system.ownerKey)", .contentType: "text/csv"]
            func count() async throws -> Int {
                var (total, token) = (0, "")
                repeat {
                    let response = try await client.execute(uri: "/api/admin/v1/users?page_size=500&page_token=\(token)", method: .get, headers: auth)
                    let page = try Admin.decoder().decode(Admin.UsersPage.self, from: Data(buffer: response.body))
                    total += page.users.count
                    token = page.nextPageToken
                } while !token.isEmpty
                return total
            }
            func importing(_ csv: Data, headers: HTTPFields) async throws -> (HTTPResponse.Status, Admin.ImportReport?) {
                let response = try await client.execute(uri: "/api/admin/v1/users/import", method: .post, headers: headers, body: ByteBuffer(bytes: csv))
                return (response.status, try? Admin.decoder().decode(Admin.ImportReport.self, from: Data(buffer: response.body)))
            }
            let before = try await count()

            // 13,000 rows (550 kB) go to the directory in two chunks; 100,000 is the limit, checked below.
            let (badStatus, bad) = try await importing(HardeningTests.csv(rows: 13_000, prefix: "b", badLine: 13_000), headers: auth)
            #expect(badStatus == .ok)
            #expect(bad?.committed == false && bad?.refused == 1)
            #expect(bad?.rows.first?.line == 13_000)
            #expect(try await count() == before, "a failure at the last row commits nothing")

            let file = HardeningTests.csv(rows: 13_000, prefix: "a")
            #expect(file.count > UserOperations.importChunk, "more than one chunk")
            var keyed = auth
            keyed[.idempotencyKey] = "import-test-1"
            let (goodStatus, good) = try await importing(file, headers: keyed)
            #expect(goodStatus == .ok)
            #expect(good?.committed == true && good?.created == 13_000 && good?.rowsOmitted == 13_000)
            let (_, again) = try await importing(file, headers: keyed)
            #expect(again?.created == 13_000 && again?.refused == 0, "the retry answers the first outcome, nothing twice")
            #expect(try await count() == before + 13_000)

            let tooLarge = try await client.execute(
                uri: "/api/admin/v1/users/import", method: .post, headers: auth, body: ByteBuffer(repeating: UInt8(ascii: "x"), count: (8 << 20) + 1)
            )
            #expect(tooLarge.status == .contentTooLarge)
            #expect(try Self.error(tooLarge).error.message.contains("8 MiB"))
            let (tooMany, _) = try await importing(HardeningTests.csv(rows: 100_001, prefix: "c"), headers: auth)
            #expect(tooMany == .contentTooLarge)
        }
    }

    @Test("every query parameter of every admin route, sent what an attacker sends: numbers get a 400 naming them, nothing gets a 5xx")
    func boundedQueries() async throws {
        let system = try await InProcessSystem()
        let agent = try await system.staff("Agnes Agent", role: "agent", email: "agnes@example.com")
        let id = agent.id
        try await system.application.test(.router) { client in
            let auth: HTTPFields = [.authorization: "Bearer \(agent.key)"]
            func send(_ method: HTTPRequest.Method, _ uri: String, headers: HTTPFields, body: String? = nil) async throws -> (status: Int, body: String) {
                let response = try await client.execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
                return (Int(response.status.code), String(buffer: response.body))
            }
            func object(_ answer: (status: Int, body: String)) throws -> [String: Any] {
                try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any] ?? [:]
            }
            // (path, parameter, other query, numeric)
            let table: [(String, String, String, Bool)] = [
                ("/api/admin/v1/users/search", "page_size", "q=a", true),
                ("/api/admin/v1/users", "page_size", "", true),
                ("/api/admin/v1/users/\(id)/messages", "page_size", "", true),
                ("/api/admin/v1/suppressions", "page_size", "", true),
                ("/api/admin/v1/audit", "page_size", "", true),
                ("/api/admin/v1/diagnosis", "since", "user=agnes@example.com", true),
                ("/api/admin/v1/users/\(id)/diagnosis", "since", "", true),
                ("/api/admin/v1/users/search", "q", "", false),
                ("/api/admin/v1/users/search", "scope", "q=a", false),
                ("/api/admin/v1/users/search", "page_token", "q=a", false),
                ("/api/admin/v1/users", "page_token", "", false),
                ("/api/admin/v1/users", "role", "", false),
                ("/api/admin/v1/users", "organization_id", "", false),
                ("/api/admin/v1/users", "state", "", false),
                ("/api/admin/v1/users/lookup", "email", "", false),
                ("/api/admin/v1/users/\(id)/messages", "page_token", "", false),
                ("/api/admin/v1/suppressions", "address", "", false),
                ("/api/admin/v1/suppressions", "page_token", "", false),
                ("/api/admin/v1/audit", "target", "", false),
                ("/api/admin/v1/audit", "page_token", "", false),
                ("/api/admin/v1/diagnosis", "user", "", false),
            ]
            for (path, parameter, rest, numeric) in table {
                for value in HardeningTests.attacks {
                    let query = (rest.isEmpty ? "" : rest + "&") + "\(parameter)=\(value)"
                    let answer = try await send(.get, "\(path)?\(query)", headers: auth)
                    #expect(answer.status < 500, "\(path)?\(query) → \(answer.status) \(answer.body)")
                    if numeric {
                        #expect((400..<500).contains(answer.status), "\(path)?\(query) → \(answer.status)")
                        let error = try object(answer)["error"] as? [String: String]
                        #expect(error?["code"] == "invalid_argument", "\(path)?\(query) → \(answer.body)")
                        #expect(error?["message"]?.hasPrefix("\(parameter) must be") == true, "\(path)?\(query) → \(answer.body)")
                    }
                }
            }
            // A JSON number out of range, said in the request's terms.
            for value in ["-1", "2147483648", "9223372036854775808", "1e309", "1.5", "\"abc\"", "\"\""] {
                var json = auth
                json[.contentType] = "application/json"
                let answer = try await send(.post, "/api/admin/v1/users/\(id)/api-keys", headers: json, body: #"{"name": "x", "lifetime_days": \#(value)}"#)
                #expect((400..<500).contains(answer.status), "lifetime_days \(value) → \(answer.status)")
                let message = (try object(answer)["error"] as? [String: String])?["message"] ?? ""
                #expect(message.contains("lifetime_days") || message.contains("a number in it"), "lifetime_days \(value) → \(answer.body)")
                #expect(!message.contains("DecodingError"), "\(answer.body)")
            }
            let nul = try await send(.get, "/api/admin/v1/users/u_%00", headers: auth)
            #expect(nul.status == 400)
            #expect(!nul.body.contains("rekey.directory"), "no internal message names: \(nul.body)")
        }
    }
}

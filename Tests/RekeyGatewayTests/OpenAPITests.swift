import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import RekeyAdminModel
import RekeyGatewayTesting
import Testing

@testable import RekeyGateway

/// The OpenAPI document is true: it lists exactly the routes the gateway serves, with the access
/// each declares, and every answer of a scripted session matches the schema it promises (and
/// decodes as the admin model type the CLI reads it with, re-encoding to the same JSON).
@Suite("The admin API's OpenAPI document")
struct OpenAPITests {
    static func document() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.bytes)) as? [String: Any] ?? [:]
    }

    static func openAPIPath(_ path: String) -> String {
        "/" + path.split(separator: "/").map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }.joined(separator: "/")
    }

    @Test("every route is documented with its access, and every documented operation is a route")
    func routesMatch() async throws {
        let system = try await InProcessSystem()
        let routes = AdminRoutes.all(AdminOperations(flows: system.flows))
        let paths = try #require(try Self.document()["paths"] as? [String: [String: Any]])
        var documented = Set<String>()
        for (path, operations) in paths {
            for method in operations.keys { documented.insert("\(method.uppercased()) \(path)") }
        }
        var served = Set<String>()
        for route in routes {
            let key = "\(route.method.rawValue) \(Self.openAPIPath(route.path))"
            served.insert(key)
            let operation = paths[Self.openAPIPath(route.path)]?[route.method.rawValue.lowercased()] as? [String: Any]
            let access = operation?["x-rekey-permission"] as? String
            switch route.access {
            case .open: #expect(access == "none", "\(key)")
            case .staff(nil): #expect(access == "staff", "\(key)")
            case .staff(let permission?): #expect(access == permission.name, "\(key)")
            }
        }
        #expect(served == documented, "served but not documented: \(served.subtracting(documented)); documented but not served: \(documented.subtracting(served))")
    }

    @Test("the document is served, without a key")
    func served() async throws {
        let system = try await InProcessSystem()
        try await system.application.test(.router) { client in
            let response = try await client.execute(uri: "/api/admin/v1/openapi.json", method: .get)
            #expect(response.status == .ok)
            let served = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
            #expect(served?["openapi"] as? String == "3.1.0")
        }
    }

    /// A session touching every route that answers 200 with a body; each answer checked against
    /// the document and decoded as the CLI decodes it.
    @Test("every answer of a scripted session matches its documented schema and the admin model")
    func answersMatch() async throws {
        let system = try await InProcessSystem()
        try await system.application.test(.router) { client in
            let document = try Self.document()
            let checker = SchemaChecker(document: document)
            let paths = try #require(document["paths"] as? [String: [String: Any]])
            let auth: HTTPFields = [.authorization: "Bearer \(system.ownerKey)", .contentType: "application/json"]
            var checked = Set<String>()

            /// Calls a route, checks the answer against the document (`status`'s schema) and the model type.
            @discardableResult
            func call<T: Codable & Equatable>(
                _ method: HTTPRequest.Method, _ template: String, _ uri: String, body: String? = nil, headers: HTTPFields? = nil,
                status: HTTPResponse.Status = .ok, as type: T.Type
            ) async throws -> T {
                let response = try await client.execute(uri: "/api/admin/v1" + uri, method: method, headers: headers ?? auth, body: body.map { ByteBuffer(string: $0) })
                let text = String(buffer: response.body)
                #expect(response.status == status, "\(method) \(uri): \(text)")
                let json = try JSONSerialization.jsonObject(with: Data(buffer: response.body))
                let operation = try #require(paths[template]?[method.rawValue.lowercased()] as? [String: Any], "\(method) \(template) is not documented")
                let responses = try #require(operation["responses"] as? [String: Any])
                let schema = try #require(checker.responseSchema(responses["\(status.code)"]), "\(method) \(template) documents no \(status.code)")
                let problems = checker.problems(json, schema, at: "$")
                #expect(problems.isEmpty, "\(method) \(uri) does not match its schema: \(problems)\n\(text)")
                let decoded = try Admin.decoder().decode(T.self, from: Data(buffer: response.body))
                // The gateway encodes with the same encoder: equal bytes unless the type dropped a field.
                let reencoded = String(decoding: try Admin.encoder().encode(decoded), as: UTF8.self)
                #expect(reencoded == text, "\(method) \(uri): the CLI's type drops or renames a field")
                checked.insert("\(method) \(template)")
                return decoded
            }

            let org = try await call(.post, "/organizations", "/organizations", body: #"{"name":"Acme","domains":["acme.example"]}"#, as: Admin.Organization.self)
            try await call(.get, "/organizations", "/organizations", as: Admin.Organizations.self)
            try await call(.patch, "/organizations/{id}", "/organizations/\(org.id)", body: #"{"name":"Acme Inc"}"#, as: Admin.Organization.self)
            let user = try await call(
                .post, "/users", "/users", body: #"{"name":"Jane Doe","email":"jane@acme.example","role":"customer","organization_id":"\#(org.id)"}"#,
                as: Admin.User.self
            )
            try await call(.get, "/users/{id}", "/users/\(user.id)", as: Admin.User.self)
            try await call(.patch, "/users/{id}", "/users/\(user.id)", body: #"{"locale":"de"}"#, as: Admin.User.self)
            try await call(.get, "/users/search", "/users/search?scope=all&q=jane", as: Admin.UsersPage.self)
            try await call(.get, "/users", "/users?page_size=1", as: Admin.UsersPage.self)
            try await call(.get, "/users/lookup", "/users/lookup?email=jane%40acme.example", as: Admin.Lookup.self)
            let added = try await call(.post, "/users/{id}/emails", "/users/\(user.id)/emails", body: #"{"address":"jane.doe@acme.example"}"#, as: Admin.User.self)
            let second = try #require(added.emails.first { !$0.primary })
            // As if its owner had opened the verification link.
            let store = system.directoryStore
            _ = try await system.directoryDatabase.withConnection { try store.markEmailVerified(user.id, emailID: second.id, actor: .system, in: $0) }
            try await call(.post, "/users/{id}/emails/{email}/primary", "/users/\(user.id)/emails/\(second.id)/primary", as: Admin.User.self)
            let first = try #require(added.emails.first { $0.primary })
            try await call(.delete, "/users/{id}/emails/{email}", "/users/\(user.id)/emails/\(first.id)", as: Admin.User.self)
            let sent = try await call(.post, "/users/{id}/password-reset", "/users/\(user.id)/password-reset", as: Admin.SentMail.self)
            try await call(.post, "/users/{id}/verification", "/users/\(user.id)/verification", as: Admin.SentMail.self)
            try await call(.get, "/users/{id}/messages", "/users/\(user.id)/messages", as: Admin.MessagesPage.self)
            try await call(.get, "/messages/{id}", "/messages/\(sent.messageId)", as: Admin.Message.self)
            try await call(.get, "/suppressions", "/suppressions", as: Admin.SuppressionsPage.self)
            let domain = try await call(.get, "/mail/domain-check", "/mail/domain-check?fresh=true", as: Admin.DomainCheck.self)
            #expect(domain.findings.map(\.check) == ["spf", "dkim", "dmarc", "mx", "link"], "\(domain.findings)")
            try await call(.get, "/mail/domain-check", "/mail/domain-check?fresh=maybe", status: .badRequest, as: Admin.ErrorBody.self)
            try await call(.post, "/mail/test", "/mail/test", body: #"{"address":"ops@acme.example"}"#, as: Admin.SentMail.self)
            try await call(.get, "/diagnosis", "/diagnosis?user=jane&since=1d", as: Admin.Diagnosis.self)
            try await call(.get, "/diagnosis", "/diagnosis?user=nobody%40acme.example", as: Admin.Diagnosis.self)
            try await call(.get, "/users/{id}/diagnosis", "/users/\(user.id)/diagnosis", as: Admin.Diagnosis.self)
            try await call(.post, "/users/{id}/disable", "/users/\(user.id)/disable", as: Admin.User.self)
            try await call(.post, "/users/{id}/enable", "/users/\(user.id)/enable", as: Admin.User.self)
            let key = try await call(.post, "/users/{id}/api-keys", "/users/\(system.ownerID)/api-keys", body: #"{"name":"laptop","lifetime_days":30}"#, as: Admin.APIKey.self)
            #expect(key.key?.hasPrefix("rk_") == true)
            try await call(.delete, "/api-keys/{id}", "/api-keys/\(key.id)", as: Admin.APIKey.self)
            try await call(.get, "/audit", "/audit?target=\(user.id)", as: Admin.AuditPage.self)
            try await call(
                .post, "/users/import", "/users/import", body: "name,email,role\nAda,ada@acme.example,customer\n",
                headers: [.authorization: "Bearer \(system.ownerKey)", .contentType: "text/csv"], as: Admin.ImportReport.self
            )
            let orphan = try await call(.post, "/organizations", "/organizations", body: #"{"name":"Empty"}"#, as: Admin.Organization.self)
            try await call(.delete, "/organizations/{id}", "/organizations/\(orphan.id)", as: Admin.Deleted.self)
            // Errors have the documented shape too.
            try await call(.get, "/users/{id}", "/users/u_00000000000000000000000000000000", status: .notFound, as: Admin.ErrorBody.self)
            try await call(.get, "/users", "/users?page_size=-1", status: .badRequest, as: Admin.ErrorBody.self)
            try await call(.post, "/users", "/users", body: #"{"name":7}"#, status: .badRequest, as: Admin.ErrorBody.self)

            // The routes not above answer without a 200 body worth checking here (the password
            // route needs a password; the suppression list is empty; the document itself).
            let skipped: Set<String> = ["POST /api-keys", "DELETE /suppressions/{address}", "GET /openapi.json"]
            var all = Set<String>()
            for (path, operations) in paths {
                for method in operations.keys { all.insert("\(method.uppercased()) \(path)") }
            }
            #expect(all.subtracting(checked).subtracting(skipped).isEmpty, "not exercised: \(all.subtracting(checked).subtracting(skipped))")
        }
    }
}

/// The part of JSON Schema the document uses: $ref, type, properties, required,
/// additionalProperties false, items, enum.
struct SchemaChecker {
    let document: [String: Any]

    func responseSchema(_ response: Any?) -> [String: Any]? {
        guard var response = response as? [String: Any] else { return nil }
        if let ref = response["$ref"] as? String { response = self.resolve(ref) ?? [:] }
        return ((response["content"] as? [String: Any])?["application/json"] as? [String: Any])?["schema"] as? [String: Any]
    }

    func resolve(_ ref: String) -> [String: Any]? {
        var node: Any = self.document
        for part in ref.dropFirst(2).split(separator: "/") {
            guard let next = (node as? [String: Any])?[String(part)] else { return nil }
            node = next
        }
        return node as? [String: Any]
    }

    func problems(_ value: Any, _ schema: [String: Any], at path: String) -> [String] {
        if let ref = schema["$ref"] as? String {
            guard let resolved = self.resolve(ref) else { return ["\(path): unresolvable \(ref)"] }
            return self.problems(value, resolved, at: path)
        }
        if let options = schema["enum"] as? [String], let text = value as? String, !options.contains(text) {
            return ["\(path): \(text) is not one of \(options)"]
        }
        switch schema["type"] as? String {
        case "object":
            guard let object = value as? [String: Any] else { return ["\(path): not an object"] }
            let properties = schema["properties"] as? [String: [String: Any]] ?? [:]
            var problems: [String] = []
            for name in schema["required"] as? [String] ?? [] where object[name] == nil {
                problems.append("\(path).\(name): required but missing")
            }
            for (name, item) in object {
                guard let property = properties[name] else {
                    if schema["additionalProperties"] as? Bool == false { problems.append("\(path).\(name): not in the schema") }
                    continue
                }
                problems += self.problems(item, property, at: "\(path).\(name)")
            }
            return problems
        case "array":
            guard let array = value as? [Any] else { return ["\(path): not an array"] }
            let items = schema["items"] as? [String: Any] ?? [:]
            return array.enumerated().flatMap { self.problems($1, items, at: "\(path)[\($0)]") }
        case "string":
            return value is String ? [] : ["\(path): not a string"]
        case "integer":
            guard let number = value as? NSNumber, number.doubleValue == number.doubleValue.rounded() else { return ["\(path): not an integer"] }
            return []
        case "boolean":
            return value is Bool ? [] : ["\(path): not true or false"]
        default:
            return []
        }
    }
}

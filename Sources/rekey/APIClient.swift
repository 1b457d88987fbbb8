import Foundation
import RekeyAdminModel

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A failure the API reported, or that reaching it caused.
struct APIFailure: Error, CustomStringConvertible {
    var status: Int
    var code: String
    var message: String

    var description: String {
        if self.status == 0 { return "cannot reach the gateway: \(self.message)" }
        if self.status == 401 { return "\(self.message) — log in again with `rekey login --gateway URL`" }
        return "\(self.message) (\(self.code), HTTP \(self.status))"
    }
}

/// The admin API over HTTP, answers decoded as the admin model's types (`RekeyAdminModel`): the
/// same definitions the gateway encodes with.
struct APIClient {
    let base: String
    let key: String
    let printJSON: Bool

    /// How long a call may go without an answer, unless it says otherwise.
    static let timeout: TimeInterval = 60

    /// One call; the answer decoded as `T`. With `--json` the answer is also printed as it came.
    /// `timeout` is how long the gateway may be silent before the call counts as lost.
    func call<T: Decodable>(
        _ method: String, _ path: String, body: Data? = nil, contentType: String = "application/json", headers: [String: String] = [:],
        timeout: TimeInterval = Self.timeout, as type: T.Type = T.self
    ) async throws -> T {
        let data = try await self.send(method, path, body: body, contentType: contentType, headers: headers, timeout: timeout)
        do {
            return try Admin.decoder().decode(T.self, from: data)
        } catch {
            throw APIFailure(status: 0, code: "unexpected_answer", message: "the gateway's answer to \(method) \(path) is not what this rekey expects (\(error)); are the CLI and the gateway the same version?")
        }
    }

    /// One call with a JSON body.
    func call<T: Decodable>(_ method: String, _ path: String, json body: some Encodable, as type: T.Type = T.self) async throws -> T {
        try await self.call(method, path, body: try Admin.encoder().encode(body), as: type)
    }

    private func send(_ method: String, _ path: String, body: Data?, contentType: String, headers: [String: String], timeout: TimeInterval) async throws -> Data {
        guard let url = URL(string: self.base + "/api/admin/v1" + path) else {
            throw APIFailure(status: 0, code: "invalid_argument", message: "bad path \(path)")
        }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.setValue("Bearer \(self.key)", forHTTPHeaderField: "Authorization")
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.timeoutInterval = timeout
        if let body {
            request.httpBody = body
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        }
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw APIFailure(status: 0, code: "unavailable", message: "\(self.base): \(error.localizedDescription)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            let error = try? Admin.decoder().decode(Admin.ErrorBody.self, from: data)
            throw APIFailure(
                status: status, code: error?.error.code ?? "http_\(status)", message: error?.error.message ?? String(decoding: data.prefix(200), as: UTF8.self)
            )
        }
        if self.printJSON, let object = try? JSONSerialization.jsonObject(with: data) {
            let pretty = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: pretty, as: UTF8.self))
        }
        return data
    }

    /// A path segment or query value, percent-encoded.
    static func query(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }

    /// The same client without `--json` printing (for look-ups a command makes on the way).
    var quiet: APIClient { APIClient(base: self.base, key: self.key, printJSON: false) }

    /// Whether the API's user routes take `text` as it is: an id (`u_…`) or an email address.
    static func namesOneUser(_ text: String) -> Bool {
        text.hasPrefix("u_") || text.contains("@")
    }

    /// The user an id (`u_…`), any of their email addresses, or a search text names. A text that
    /// matches several users lists them and fails: nothing is done to a guess.
    func user(_ text: String) async throws -> Admin.User {
        if Self.namesOneUser(text) {
            return try await self.quiet.call("GET", "/users/\(Self.query(text))")
        }
        let users = try await self.quiet.call("GET", "/users/search?scope=all&page_size=10&q=\(Self.query(text))", as: Admin.UsersPage.self).users
        switch users.count {
        case 1:
            return users[0]
        case 0:
            throw APIFailure(status: 404, code: "not_found", message: "no user matches `\(text)`")
        default:
            let list = users.map { "  " + Output.userLine($0) }.joined(separator: "\n")
            throw APIFailure(status: 409, code: "ambiguous", message: "`\(text)` matches several users; name one by id or email:\n\(list)")
        }
    }

    /// What to put in a user route's path for `text`: itself when it names one user, else the id
    /// of the one user a search finds.
    func userReference(_ text: String) async throws -> String {
        Self.namesOneUser(text) ? text : try await self.user(text).id
    }
}

import ArgumentParser
import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Where the gateway is and the admin's API key: flags, else `REKEY_URL` and `REKEY_API_KEY`.
struct Connection: ParsableArguments {
    @Option(help: "The gateway's URL. Env: REKEY_URL. Default: http://127.0.0.1:8080.")
    var url: String?

    @Option(help: "An admin API key (rk_…). Env: REKEY_API_KEY. Prefer the environment: flags show in `ps`.")
    var apiKey: String?

    @Flag(help: "Print the API's JSON instead of text.")
    var json = false

    func client() throws -> APIClient {
        let environment = ProcessInfo.processInfo.environment
        let saved = StoredLogin.load()
        let base = self.url ?? environment["REKEY_URL"] ?? saved?.url ?? "http://127.0.0.1:8080"
        guard let url = URL(string: base), url.scheme == "http" || url.scheme == "https" else {
            throw ValidationError("--url must be the gateway's http or https URL, such as http://127.0.0.1:8080")
        }
        guard let key = self.apiKey ?? environment["REKEY_API_KEY"] ?? saved?.apiKey, !key.isEmpty else {
            throw ValidationError("no API key: run `rekey login --gateway URL`, or set REKEY_API_KEY (rekey-directory bootstrap-admin prints the first one)")
        }
        return APIClient(base: base.hasSuffix("/") ? String(base.dropLast()) : base, key: key, printJSON: self.json)
    }
}

/// The gateway and API key `rekey login` stored, in `$XDG_CONFIG_HOME/rekey/login.json` (or
/// `~/.config/rekey/login.json`), readable by the user only.
struct StoredLogin: Codable {
    var url: String
    var apiKey: String

    static var path: String {
        let environment = ProcessInfo.processInfo.environment
        let config = environment["XDG_CONFIG_HOME"] ?? ((environment["HOME"] ?? NSHomeDirectory()) + "/.config")
        return config + "/rekey/login.json"
    }

    static func load() -> StoredLogin? {
        guard let data = FileManager.default.contents(atPath: Self.path) else { return nil }
        return try? JSONDecoder().decode(StoredLogin.self, from: data)
    }

    func save() throws {
        let folder = (Self.path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let data = try JSONEncoder().encode(self)
        guard FileManager.default.createFile(atPath: Self.path, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw ValidationError("cannot write \(Self.path)")
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: Self.path)
    }
}

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

/// The admin API over HTTP.
struct APIClient {
    let base: String
    let key: String
    let printJSON: Bool

    func call(
        _ method: String, _ path: String, body: Data? = nil, contentType: String = "application/json", headers: [String: String] = [:]
    ) async throws -> [String: Any] {
        guard let url = URL(string: self.base + "/api/admin/v1" + path) else {
            throw APIFailure(status: 0, code: "invalid_argument", message: "bad path \(path)")
        }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.setValue("Bearer \(self.key)", forHTTPHeaderField: "Authorization")
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.timeoutInterval = 60
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
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        guard (200..<300).contains(status) else {
            let error = object["error"] as? [String: Any]
            throw APIFailure(
                status: status, code: error?["code"] as? String ?? "http_\(status)",
                message: error?["message"] as? String ?? String(decoding: data.prefix(200), as: UTF8.self)
            )
        }
        if self.printJSON {
            let pretty = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: pretty, as: UTF8.self))
        }
        return object
    }

    static func json(_ object: [String: Any]) -> Data {
        (try? JSONSerialization.data(withJSONObject: object)) ?? Data()
    }

    static func query(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }

    /// The user an id (`u_…`), any of their email addresses, or a search text names. A text that
    /// matches several users lists them and fails: nothing is done to a guess.
    func user(_ text: String) async throws -> [String: Any] {
        let quiet = APIClient(base: self.base, key: self.key, printJSON: false)
        if text.contains("@") {
            let found = try await quiet.call("GET", "/users/lookup?email=\(Self.query(text))")
            return found["user"] as? [String: Any] ?? [:]
        }
        if text.hasPrefix("u_") {
            return try await quiet.call("GET", "/users/\(Self.query(text))")
        }
        let users = try await quiet.call("GET", "/users/search?scope=all&page_size=10&q=\(Self.query(text))")["users"] as? [[String: Any]] ?? []
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
}

/// Text output helpers.
enum Output {
    static func userLine(_ user: [String: Any]) -> String {
        let emails = user["emails"] as? [[String: Any]] ?? []
        let primary = emails.first { $0["primary"] as? Bool == true }?["address"] as? String ?? ""
        let state = user["state"] as? String == "disabled" ? "  (disabled)" : ""
        return "\(user["id"] as? String ?? "")  \(user["name"] as? String ?? "")  <\(primary)>  \(user["role"] as? String ?? "")\(state)"
    }

    static func user(_ user: [String: Any]) {
        print(Self.userLine(user))
        for email in user["emails"] as? [[String: Any]] ?? [] {
            let flags = [email["primary"] as? Bool == true ? "primary" : nil, email["verified"] as? Bool == true ? "verified" : "unverified"].compactMap { $0 }
            print("  \(email["address"] as? String ?? "")  \(flags.joined(separator: ", "))  \(email["id"] as? String ?? "")")
        }
        print("  password: \(user["has_password"] as? Bool == true ? "set" + ((user["password_changed_at"] as? String).map { " \($0)" } ?? "") : "none yet")")
        if let organization = user["organization_id"] as? String { print("  organization: \(organization)") }
        print("  locale: \(user["locale"] as? String ?? "")  created: \(user["created_at"] as? String ?? "")")
    }

    static func message(_ message: [String: Any]) {
        Self.message(message, indent: "")
    }

    static func message(_ message: [String: Any], indent: String) {
        func print(_ line: String) { Swift.print(indent + line) }
        print("\(message["created_at"] as? String ?? "")  \(message["id"] as? String ?? "")  \(message["template"] as? String ?? "")  to \(message["to"] as? String ?? "")  \(message["state"] as? String ?? "")")
        if let reason = message["reason"] as? String, !reason.isEmpty { print("  \(reason)") }
        for attempt in message["attempts"] as? [[String: Any]] ?? [] {
            var line = "  \(attempt["started_at"] as? String ?? "")  \(attempt["outcome"] as? String ?? "")  \(attempt["server"] as? String ?? "")"
            if let code = attempt["reply_code"] as? Int, code > 0 {
                line += "  \(code) \(attempt["enhanced_status"] as? String ?? "") \(attempt["reply_text"] as? String ?? "")"
            } else if let error = attempt["error"] as? String, !error.isEmpty {
                line += "  \(error)"
            }
            if let queueID = attempt["remote_queue_id"] as? String, !queueID.isEmpty { line += "  [queue id \(queueID)]" }
            print(line)
        }
    }
}

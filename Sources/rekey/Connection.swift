import ArgumentParser
import Foundation

/// Where the gateway is and the admin's API key: flags, else `REKEY_URL` and `REKEY_API_KEY`,
/// else what `rekey login` stored.
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

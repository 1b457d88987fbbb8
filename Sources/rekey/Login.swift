import ArgumentParser
import Foundation
import RekeyAdminModel

struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store the gateway's URL and your API key (asked for, checked, kept readable by you only).",
        discussion: "The key is read from the terminal without echo, or from standard input when it is not a terminal."
    )
    @Option(help: "The gateway's URL, such as https://sso.example.com.") var gateway: String
    @Option(help: "Sign in with your email address and password (asked for) to make a new API key of your own, instead of pasting one.")
    var email: String?

    func run() async throws {
        guard let url = URL(string: self.gateway), url.scheme == "http" || url.scheme == "https" else {
            throw ValidationError("--gateway must be an http or https URL")
        }
        let base = self.gateway.hasSuffix("/") ? String(self.gateway.dropLast()) : self.gateway
        if let email {
            let password = Self.readSecret(prompt: "Password for \(email): ")
            guard !password.isEmpty else { throw ValidationError("no password given") }
            try await RekeyCommand.run {
                let name = String("rekey CLI on \(ProcessInfo.processInfo.hostName)".prefix(100))
                let created = try await APIClient(base: base, key: "", printJSON: false)
                    .call("POST", "/api-keys", json: Admin.PasswordAPIKey(email: email, password: password, name: name), as: Admin.APIKey.self)
                guard let key = created.key, !key.isEmpty else { throw APIFailure(status: 500, code: "internal", message: "the gateway made no key") }
                try StoredLogin(url: base, apiKey: key).save()
                print("Logged in to \(base) as \(email) with a new API key (\(created.id)); it is stored in \(StoredLogin.path) (mode 0600).")
            }
            return
        }
        let key = Self.readSecret(prompt: "API key: ")
        guard !key.isEmpty else { throw ValidationError("no API key given") }
        try await RekeyCommand.run {
            _ = try await APIClient(base: base, key: key, printJSON: false).call("GET", "/users/search?page_size=1", as: Admin.UsersPage.self)
            try StoredLogin(url: base, apiKey: key).save()
            print("Logged in to \(base); the key is stored in \(StoredLogin.path) (mode 0600).")
        }
    }

    static func readSecret(prompt: String) -> String {
        guard isatty(STDIN_FILENO) == 1 else { return (readLine() ?? "").trimmingCharacters(in: .whitespaces) }
        FileHandle.standardError.write(Data(prompt.utf8))
        var settings = termios()
        tcgetattr(STDIN_FILENO, &settings)
        var hidden = settings
        hidden.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(STDIN_FILENO, TCSANOW, &hidden)
        defer {
            tcsetattr(STDIN_FILENO, TCSANOW, &settings)
            FileHandle.standardError.write(Data("\n".utf8))
        }
        return (readLine() ?? "").trimmingCharacters(in: .whitespaces)
    }
}

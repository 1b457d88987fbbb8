import RekeyInput
import Foundation

/// Where a setting's value came from, for error messages that name it.
package enum SettingOrigin: Sendable, CustomStringConvertible {
    case flag(String)
    case environment(String)
    case configFile(path: String, line: Int)
    case defaultValue

    package var description: String {
        switch self {
        case .flag(let name): return "flag --\(name)"
        case .environment(let name): return "environment variable \(name)"
        case .configFile(let path, let line): return "\(path), line \(line)"
        case .defaultValue: return "default"
        }
    }
}

/// A bad setting: names the key, the value, where it came from, and what was expected.
package struct SettingsError: Error, CustomStringConvertible {
    package var message: String

    package init(_ message: String) {
        self.message = message
    }

    package var description: String { self.message }
}

/// Resolves settings with one precedence for every Rekey executable: a command-line flag, then the
/// environment variable `REKEY_<SERVICE>_<KEY>`, then the config file, then the default.
///
/// Keys are lower-case with underscores (`data_dir`); the flag is `--data-dir`, the environment
/// variable `REKEY_RESET_TOKEN_DATA_DIR`, the config-file line `data_dir = ./data`. The config file
/// holds `key = value` lines, `#` comments and blank lines; unknown keys are an error.
package struct Settings: Sendable {
    private let service: String
    private let flags: [String: String]
    private let environment: [String: String]
    private let file: [String: (value: String, line: Int)]
    private let filePath: String?

    /// - Parameters:
    ///   - service: the upper-case service name in environment variables, such as `RESET_TOKEN`.
    ///   - flags: values given on the command line, by key.
    ///   - knownKeys: every key the executable understands, to reject typos in the config file.
    ///   - configFile: the config file's path, if one was given.
    package init(
        service: String,
        flags: [String: String?],
        knownKeys: Set<String>,
        configFile: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws {
        self.service = service
        self.flags = flags.compactMapValues { $0 }
        self.environment = environment
        self.filePath = configFile
        var file: [String: (String, Int)] = [:]
        if let configFile {
            guard let data = FileManager.default.contents(atPath: configFile) else {
                throw SettingsError("cannot read the config file \(configFile)")
            }
            guard let text = String(data: data, encoding: .utf8) else {
                throw SettingsError("the config file \(configFile) is not UTF-8 text")
            }
            for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = rawLine.trimmingCharacters(in: .whitespaces)
                if line.isEmpty || line.hasPrefix("#") { continue }
                let parts = line.split(separator: "=", maxSplits: 1)
                guard parts.count == 2 else {
                    throw SettingsError("\(configFile), line \(index + 1): expected `key = value`, got `\(line)`")
                }
                let key = parts[0].trimmingCharacters(in: .whitespaces)
                var value = parts[1].trimmingCharacters(in: .whitespaces)
                if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                    value = String(value.dropFirst().dropLast())
                }
                guard knownKeys.contains(key) else {
                    throw SettingsError("\(configFile), line \(index + 1): unknown setting `\(key)` (known: \(knownKeys.sorted().joined(separator: ", ")))")
                }
                file[key] = (value, index + 1)
            }
        }
        self.file = file
    }

    /// The environment variable for `key`.
    package func environmentName(_ key: String) -> String {
        "REKEY_\(self.service)_\(key.uppercased())"
    }

    /// The raw text for `key` and where it came from, or `nil` if it is set nowhere.
    package func raw(_ key: String) -> (value: String, origin: SettingOrigin)? {
        if let value = self.flags[key] {
            return (value, .flag(key.replacingOccurrences(of: "_", with: "-")))
        }
        let name = self.environmentName(key)
        if let value = self.environment[name] {
            return (value, .environment(name))
        }
        if let entry = self.file[key], let path = self.filePath {
            return (entry.value, .configFile(path: path, line: entry.line))
        }
        return nil
    }

    /// A setting converted by `parse`, which returns `nil` for a value it cannot accept.
    package func value<T>(_ key: String, default defaultValue: T?, expected: String, _ parse: (String) -> T?) throws -> T {
        guard let (text, origin) = self.raw(key) else {
            guard let defaultValue else {
                throw SettingsError("missing setting `\(key)`: give --\(key.replacingOccurrences(of: "_", with: "-")), \(self.environmentName(key)) or `\(key) = …` in a config file")
            }
            return defaultValue
        }
        guard let value = parse(text) else {
            throw SettingsError("invalid value `\(text)` for `\(key)` (from \(origin)): expected \(expected)")
        }
        return value
    }

    package func string(_ key: String, default defaultValue: String?) throws -> String {
        try self.value(key, default: defaultValue, expected: "text") { $0.isEmpty ? nil : $0 }
    }

    package func integer(_ key: String, default defaultValue: Int, range: ClosedRange<Int>) throws -> Int {
        try self.value(key, default: defaultValue, expected: "a whole number from \(range.lowerBound) to \(range.upperBound)") { text in
            try? Bounded.integer(text, key, in: range)
        }
    }

    /// A duration written as a number and a unit: `500ms`, `90s`, `30m`, `24h`, `30d`.
    package func duration(_ key: String, default defaultValue: Duration, range: ClosedRange<Duration>) throws -> Duration {
        try self.value(key, default: defaultValue, expected: "a duration such as 90s, 30m, 24h or 30d, from \(Self.format(range.lowerBound)) to \(Self.format(range.upperBound))") { text in
            Self.parseDuration(text).flatMap { range.contains($0) ? $0 : nil }
        }
    }

    /// An address to listen on or connect to: `host:port`.
    package func address(_ key: String, default defaultValue: HostAndPort) throws -> HostAndPort {
        try self.value(key, default: defaultValue, expected: "host:port, such as 127.0.0.1:7102") { HostAndPort(parsing: $0) }
    }

    /// One or more `host:port`, comma-separated (the replicas of a service), each at most once.
    package func addresses(_ key: String, default defaultValue: HostAndPort) throws -> [HostAndPort] {
        try self.value(key, default: [defaultValue], expected: "host:port, or several separated by commas, each once, such as 10.0.0.11:7102,10.0.0.12:7102") { text in
            let items = text.split(separator: ",", omittingEmptySubsequences: false).map { HostAndPort(parsing: $0.trimmingCharacters(in: .whitespaces)) }
            guard !items.isEmpty, items.count <= 64, items.allSatisfy({ $0 != nil }) else { return nil }
            let addresses = items.compactMap { $0 }
            guard Set(addresses.map { "\($0.host):\($0.port)" }).count == addresses.count else { return nil }
            return addresses
        }
    }

    /// host:port, or `off` for nil (a listener the operator turned off).
    package func optionalAddress(_ key: String, default defaultValue: HostAndPort) throws -> HostAndPort? {
        if self.raw(key)?.value == "off" { return nil }
        return try self.address(key, default: defaultValue)
    }

    /// A comma-separated list of non-empty items.
    package func list(_ key: String, default defaultValue: [String]?) throws -> [String] {
        try self.value(key, default: defaultValue, expected: "a comma-separated list") { text in
            let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            return items.isEmpty || items.contains(where: \.isEmpty) ? nil : items
        }
    }

    package static func parseDuration(_ text: String) -> Duration? {
        Bounded.parseDuration(Substring(text))
    }

    package static func format(_ duration: Duration) -> String {
        Bounded.format(duration)
    }
}

/// `host:port`, as given in settings.
package struct HostAndPort: Hashable, Sendable, CustomStringConvertible {
    package var host: String
    package var port: Int

    package init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` and `[v6]:port`; `nil` for anything else or a port outside 0-65535.
    package init?(parsing text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, !host.contains(" "), let port = Int(portText), (0...65535).contains(port) else { return nil }
        self.host = String(host)
        self.port = port
    }

    package var description: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }
}

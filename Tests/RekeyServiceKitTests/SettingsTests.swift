import Foundation
import RekeyServiceKit
import Testing

@Suite("Settings")
struct SettingsTests {
    let keys: Set<String> = ["listen", "data_dir", "retention", "limit"]

    func withConfigFile<R>(_ text: String, _ body: (String) throws -> R) throws -> R {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rekey-\(UUID().uuidString).conf").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try body(path)
    }

    @Test("a flag beats the environment, which beats the config file, which beats the default")
    func precedence() throws {
        try self.withConfigFile("# comment\n\nlisten = 10.0.0.1:1\ndata_dir = \"/from/file\"\nlimit = 7\n") { path in
            let environment = ["REKEY_TEST_LISTEN": "10.0.0.2:2", "REKEY_TEST_DATA_DIR": "/from/env"]
            let settings = try Settings(
                service: "TEST", flags: ["listen": "10.0.0.3:3", "data_dir": nil], knownKeys: self.keys,
                configFile: path, environment: environment
            )
            #expect(try settings.address("listen", default: HostAndPort(host: "x", port: 0)) == HostAndPort(host: "10.0.0.3", port: 3))
            #expect(try settings.string("data_dir", default: "/default") == "/from/env")
            #expect(try settings.integer("limit", default: 1, range: 1...10) == 7)
            #expect(try settings.duration("retention", default: .seconds(60), range: .seconds(1) ... .seconds(3600)) == .seconds(60))
        }
    }

    @Test("a bad value names the key, the value and where it came from")
    func badValues() throws {
        let settings = try Settings(
            service: "TEST", flags: ["limit": "11"], knownKeys: self.keys, configFile: nil,
            environment: ["REKEY_TEST_RETENTION": "forever"]
        )
        #expect {
            try settings.integer("limit", default: 1, range: 1...10)
        } throws: { "\($0)" == "invalid value `11` for `limit` (from flag --limit): expected a whole number from 1 to 10" }
        #expect {
            try settings.duration("retention", default: .seconds(1), range: .seconds(1) ... .seconds(60))
        } throws: { "\($0)".contains("`forever` for `retention` (from environment variable REKEY_TEST_RETENTION)") }
        #expect {
            try settings.string("data_dir", default: nil)
        } throws: { "\($0)".contains("missing setting `data_dir`: give --data-dir, REKEY_TEST_DATA_DIR") }
    }

    @Test("config files with unknown keys or broken lines are refused with the line number")
    func badConfigFiles() throws {
        for (text, expected) in [("listen = a:1\nlisten_port = 3\n", "line 2: unknown setting `listen_port`"), ("just words\n", "line 1: expected `key = value`")] {
            try self.withConfigFile(text) { path in
                #expect {
                    try Settings(service: "TEST", flags: [:], knownKeys: self.keys, configFile: path, environment: [:])
                } throws: { "\($0)".contains(expected) }
            }
        }
        #expect(throws: SettingsError.self) {
            try Settings(service: "TEST", flags: [:], knownKeys: self.keys, configFile: "/nonexistent.conf", environment: [:])
        }
    }

    @Test("durations read with their unit", arguments: [
        ("250ms", Duration.milliseconds(250)), ("90s", .seconds(90)), ("30m", .seconds(1800)), ("24h", .seconds(86400)), ("30d", .seconds(30 * 86400)),
    ])
    func durations(text: String, expected: Duration) {
        #expect(Settings.parseDuration(text) == expected)
    }

    @Test("durations without a unit, negative or overflowing are refused", arguments: ["10", "-5s", "5 s", "s", "99999999999999999d"])
    func badDurations(text: String) {
        #expect(Settings.parseDuration(text) == nil)
    }

    @Test("addresses parse as host:port, IPv6 in brackets", arguments: [
        ("127.0.0.1:7102", HostAndPort(host: "127.0.0.1", port: 7102) as HostAndPort?),
        ("[::1]:80", HostAndPort(host: "::1", port: 80)),
        ("localhost:0", HostAndPort(host: "localhost", port: 0)),
        ("127.0.0.1", nil), (":80", nil), ("host:99999", nil), ("host:port", nil), ("[::1]80", nil),
    ])
    func addresses(text: String, expected: HostAndPort?) {
        #expect(HostAndPort(parsing: text) == expected)
    }
}

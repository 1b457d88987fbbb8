import Foundation

/// An authoritative DNS server on loopback (dnslib, Tests/Interop/dns_server.py) answering from a
/// zone the test sets and may change while it runs.
package final class DNSTestServer: @unchecked Sendable {
    // @unchecked: the process and pipes are only touched by the test that owns this object.
    /// Records by name: `["example.com": [("TXT", "v=spf1 -all"), ("MX", "10 mx.example.com.")]]`.
    package typealias Zone = [String: [(type: String, value: String)]]

    package let port: Int
    package var address: String { "127.0.0.1:\(self.port)" }
    private let zoneFile: String
    private let process = Process()
    private let input = Pipe()

    /// With `udpLimit`, UDP replies longer than that come back truncated (TC set), for TCP.
    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package init(zone: Zone, udpLimit: Int? = nil) throws {
        self.zoneFile = NSTemporaryDirectory() + "rekey-dns-\(UUID().uuidString).json"
        try Self.write(zone, to: self.zoneFile)
        self.port = try SMTPTestServer.startPeer(
            self.process, input: self.input, script: "dns_server.py", arguments: [self.zoneFile] + (udpLimit.map { ["--udp-limit", "\($0)"] } ?? [])
        )
    }

    /// Replaces every record; the next query sees the new ones.
    package func update(_ zone: Zone) throws {
        try Self.write(zone, to: self.zoneFile)
    }

    private static func write(_ zone: Zone, to path: String) throws {
        var json: [String: [[String]]] = [:]
        for (name, records) in zone {
            json[name.hasSuffix(".") ? name : name + "."] = records.map { [$0.type, $0.value] }
        }
        let temporary = path + ".new"
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else { throw SMTPTestServer.StartError(message: "cannot write the zone file \(path)") }
    }

    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package func stop() {
        try? self.input.fileHandleForWriting.close()
        waitForExit(self.process)
        try? FileManager.default.removeItem(atPath: self.zoneFile)
    }

    /// Stops the server and waits, on a thread of its own, for it to exit.
    package func stop() async {
        await onThread { self.stop() }
    }

    /// Starts a server on a thread of its own (see ``init(zone:udpLimit:)``).
    package static func start(zone: Zone, udpLimit: Int? = nil) async throws -> DNSTestServer {
        try await offPool { try DNSTestServer(zone: zone, udpLimit: udpLimit) }
    }

    deinit {
        // Closing its input stops it; the wait is left to a thread of its own, as the last
        // reference may go on the concurrency pool.
        try? self.input.fileHandleForWriting.close()
        let (process, zoneFile) = (self.process, self.zoneFile)
        Thread {
            waitForExit(process)
            try? FileManager.default.removeItem(atPath: zoneFile)
        }.start()
    }
}

/// python3-dkim's verdict on each DKIM-Signature of a message (Tests/Interop/dkim_verify.py),
/// its keys looked up on `dns`.
package struct DKIMVerification: Decodable {
    package var d: String?
    package var s: String?
    package var a: String?
    package var ok: Bool
    package var error: String?

    package static func verify(_ path: String, dns: DNSTestServer) async throws -> [DKIMVerification] {
        try await offPool { try Self.verify(path, dns: dns) }
    }

    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package static func verify(_ path: String, dns: DNSTestServer) throws -> [DKIMVerification] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: SMTPTestServer.python)
        process.arguments = [SMTPTestServer.root.appendingPathComponent("Tests/Interop/dkim_verify.py").path, path, dns.address]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        waitForExit(process)
        return try JSONDecoder().decode([DKIMVerification].self, from: data)
    }
}

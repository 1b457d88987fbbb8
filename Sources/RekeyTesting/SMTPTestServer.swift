import Foundation

/// A real SMTP server (aiosmtpd, Tests/Interop/smtp_server.py) on loopback, in its own process.
package final class SMTPTestServer: @unchecked Sendable {
    // @unchecked: the process and pipes are only touched by the test that owns this object.
    /// The repository (this file is Sources/RekeyTesting/SMTPTestServer.swift).
    package static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    package static let python = ProcessInfo.processInfo.environment["REKEY_PYTHON"] ?? "/usr/bin/python3"

    package let folder: String
    package let port: Int
    private let process = Process()
    private let input = Pipe()

    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package init(folder: String, port: Int = 0, options: [String] = []) throws {
        self.folder = folder
        self.port = try Self.startPeer(self.process, input: self.input, script: "smtp_server.py", arguments: [folder, "--port", "\(port)"] + options)
    }

    /// Starts one of the Python test peers in Tests/Interop and reads the `port=N` line it prints
    /// once it accepts connections; closing `input` stops it.
    static func startPeer(_ process: Process, input: Pipe, script: String, arguments: [String]) throws -> Int {
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: Self.python)
        process.arguments = [Self.root.appendingPathComponent("Tests/Interop/\(script)").path] + arguments
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        var data = Data()
        while !data.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            data.append(chunk)
        }
        let line = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard line.hasPrefix("port="), let port = Int(line.dropFirst(5)) else {
            throw StartError(message: "\(script) did not start: \(line)")
        }
        return port
    }

    package struct StartError: Error {
        package var message: String
    }

    /// The messages it accepted, oldest first.
    package func messages() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: self.folder)) ?? []
        return names.filter { $0.hasSuffix(".eml") }.sorted { Int($0.dropLast(4)) ?? 0 < Int($1.dropLast(4)) ?? 0 }.map { self.folder + "/" + $0 }
    }

    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package func stop() {
        try? self.input.fileHandleForWriting.close()
        waitForExit(self.process)
    }

    /// A loopback port that was free a moment ago, found on a thread of its own.
    package static func freePort() async throws -> Int {
        try await offPool { try Self.freePort() }
    }

    /// Starts a server on a thread of its own (see ``init(folder:port:options:)``).
    package static func start(folder: String, port: Int = 0, options: [String] = []) async throws -> SMTPTestServer {
        try await offPool { try SMTPTestServer(folder: folder, port: port, options: options) }
    }

    /// Stops the server and waits, on a thread of its own, for it to exit.
    package func stop() async {
        await onThread { self.stop() }
    }

    deinit {
        // Closing its input stops it; the wait is left to a thread of its own, as the last
        // reference may go on the concurrency pool.
        try? self.input.fileHandleForWriting.close()
        let process = self.process
        Thread { waitForExit(process) }.start()
    }

    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package static func freePort() throws -> Int {
        let probe = try SMTPTestServer(folder: NSTemporaryDirectory() + "rekey-probe-\(UUID().uuidString)")
        defer { probe.stop() }
        return probe.port
    }
}

/// What Python's email package makes of a message (Tests/Interop/parse_mail.py).
package struct ParsedMail: Decodable {
    package struct Part: Decodable {
        package var type: String
        package var charset: String?
        package var body: String
    }

    package var headers: [String: String]
    package var content_type: String
    package var parts: [Part]
    package var defects: [String]
    package var bare_lf: Bool

    /// Python's reading of the message in the file at `path`.
    package static func parse(_ path: String) async throws -> ParsedMail {
        let (status, output) = try await runProgram(SMTPTestServer.python, [SMTPTestServer.root.appendingPathComponent("Tests/Interop/parse_mail.py").path, path])
        guard status == 0 else { throw SMTPTestServer.StartError(message: "parse_mail.py failed on \(path): \(output)") }
        return try JSONDecoder().decode(ParsedMail.self, from: Data(output.utf8))
    }
}

/// How many times each message arrived at an ``SMTPTestServer``, by the value of one header
/// (`Message-ID`, `X-Rekey-Message`). Each file is read once: tests ask often while thousands
/// arrive.
package final class MailArrivals: @unchecked Sendable {
    // @unchecked: used by one test's task at a time.
    private let server: SMTPTestServer
    private let header: String
    private var seen: Set<String> = []
    private var tally: [String: Int] = [:]

    package init(_ server: SMTPTestServer, header: String) {
        self.server = server
        self.header = header.lowercased() + ":"
    }

    /// The values seen so far (angle brackets removed), each with how often it arrived.
    package func counts() -> [String: Int] {
        for path in self.server.messages() where !self.seen.contains(path) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8),
                  let line = text.split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix(self.header) })
            else { continue }
            self.seen.insert(path)
            let value = line.dropFirst(self.header.count).trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "<>"))
            self.tally[value, default: 0] += 1
        }
        return self.tally
    }
}

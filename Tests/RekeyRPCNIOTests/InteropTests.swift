import Foundation
import RekeyProtobuf
import RekeyRPC
import RekeyRPCNIO
import RekeyTesting
import Testing

/// Proves the wire format is plain protobuf: Python's official protobuf package, with classes that
/// protoc generates from proto/, talks to the Swift server and serves the Swift client.
@Suite("Interoperability with Python")
struct InteropTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let python = ProcessInfo.processInfo.environment["REKEY_PYTHON"] ?? "/usr/bin/python3"

    /// Generates the Python classes for the envelope and health protos into a scratch folder.
    static func generatePython() async throws -> URL {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("rekey-py-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let protoc = try await runProgram(
            "/usr/bin/protoc", ["-Iproto", "--python_out=\(out.path)", "proto/rekey/rpc/v1/envelope.proto", "proto/rekey/health/v1/health.proto"],
            directory: Self.root
        )
        try #require(protoc.status == 0, "protoc failed: \(protoc.output)")
        return out
    }

    @Test("a Python client calls the health method of the Swift server")
    func pythonClient() async throws {
        let generated = try await Self.generatePython()
        defer { try? FileManager.default.removeItem(at: generated) }
        try await withRPCServer(services: []) { _, port in
            let (status, text) = try await runProgram(Self.python, [Self.root.appendingPathComponent("Tests/Interop/health_client.py").path, generated.path, "\(port)"])
            #expect(status == 0, "\(text)")
            #expect(text.trimmingCharacters(in: .whitespacesAndNewlines) == "SERVING SERVICE_UNKNOWN")
        }
    }

    @Test("the Swift client calls a server written in Python")
    func pythonServer() async throws {
        let generated = try await Self.generatePython()
        defer { try? FileManager.default.removeItem(at: generated) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.python)
        process.arguments = [Self.root.appendingPathComponent("Tests/Interop/health_server.py").path, generated.path]
        let output = Pipe()
        let input = Pipe()
        process.standardOutput = output
        process.standardInput = input
        try process.run()
        defer {
            // Closing its standard input tells the server to exit; waited for on a thread of its own.
            try? input.fileHandleForWriting.close()
            Thread { waitForExit(process) }.start()
        }
        let firstLine = try await offPool { () -> String in
            var data = Data()
            while !data.contains(UInt8(ascii: "\n")) {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                data.append(chunk)
            }
            return String(decoding: data, as: UTF8.self)
        }
        let port = try #require(Int(firstLine.trimmingCharacters(in: .whitespacesAndNewlines)), "python server said: \(firstLine)")

        try await withRPCClient(port: port) { client in
            let response = try await Rekey_Health_V1_Health.Client(wrapping: client).check(.init(), options: CallOptions(timeout: .seconds(10)))
            #expect(response.status == .serving)
            let error = await #expect(throws: RPCError.self) {
                try await Rekey_Testing_V1_Echo.Client(wrapping: client).echo(echoRequest("x"))
            }
            #expect(error == RPCError(.unimplemented, "python serves only health"))
        }
    }
}

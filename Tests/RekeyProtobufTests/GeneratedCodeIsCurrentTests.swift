import Foundation
import Testing

/// Regenerates the code from `proto/` into a scratch folder and compares it with what is committed.
@Suite("Generated code")
struct GeneratedCodeIsCurrentTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("the committed generated code matches proto/ (run `make proto` if this fails)")
    func generatedCodeIsCurrent() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rekey-proto-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try run("/bin/bash", [Self.root.appendingPathComponent("scripts/generate-proto.sh").path, scratch.path])
        for folder in ["Sources/CRekeyProto", "Sources/RekeyRPC/Generated", "Sources/RekeyTesting/Generated"] {
            let output = try run("/usr/bin/diff", ["-r", Self.root.appendingPathComponent(folder).path, scratch.appendingPathComponent(folder).path], allowFailure: true)
            #expect(output.status == 0, "stale generated code in \(folder):\n\(output.text)")
        }
    }

    @discardableResult
    private func run(_ tool: String, _ arguments: [String], allowFailure: Bool = false) throws -> (status: Int32, text: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        if !allowFailure && process.terminationStatus != 0 {
            Issue.record("\(tool) \(arguments.joined(separator: " ")) failed: \(text)")
        }
        return (process.terminationStatus, text)
    }
}

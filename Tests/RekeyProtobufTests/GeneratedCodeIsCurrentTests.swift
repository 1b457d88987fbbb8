import Foundation
import RekeyTesting
import Testing

/// Regenerates the code from `proto/` into a scratch folder and compares it with what is committed.
@Suite("Generated code")
struct GeneratedCodeIsCurrentTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("the committed generated code matches proto/ (run `make proto` if this fails)")
    func generatedCodeIsCurrent() async throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rekey-proto-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try await run("/bin/bash", [Self.root.appendingPathComponent("scripts/generate-proto.sh").path, scratch.path])
        let list = try String(contentsOf: Self.root.appendingPathComponent("scripts/generated-dirs.txt"), encoding: .utf8)
        let folders = list.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.isEmpty }.map(String.init)
        #expect(folders.count >= 4)
        for folder in folders {
            let output = try await run("/usr/bin/diff", ["-r", Self.root.appendingPathComponent(folder).path, scratch.appendingPathComponent(folder).path], allowFailure: true)
            #expect(output.status == 0, "stale generated code in \(folder):\n\(output.text)")
        }
    }

    /// Runs `tool` off the concurrency pool (the generator takes seconds); records a failure
    /// unless `allowFailure`.
    @discardableResult
    private func run(_ tool: String, _ arguments: [String], allowFailure: Bool = false) async throws -> (status: Int32, text: String) {
        let (status, text) = try await runProgram(tool, arguments)
        if !allowFailure && status != 0 {
            Issue.record("\(tool) \(arguments.joined(separator: " ")) failed: \(text)")
        }
        return (status, text)
    }
}

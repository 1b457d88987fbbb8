import Foundation
import RekeyTesting

/// Runs the real `rekey` executable against a ``RekeySystem``.
package enum RekeyCLI {
    /// Runs `rekey` with `arguments` (on a thread of its own: waiting for a child blocks) and
    /// returns its exit status and everything it printed.
    package static func run(
        _ arguments: [String], system: RekeySystem, key: String? = nil, environment: [String: String]? = nil, input: String? = nil
    ) async throws -> (status: Int32, output: String) {
        try await offPool { try Self.runBlocking(arguments, system: system, key: key, environment: environment, input: input) }
    }

    private static func runBlocking(
        _ arguments: [String], system: RekeySystem, key: String?, environment: [String: String]?, input: String?
    ) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = ServiceProcess.productsDirectory.appendingPathComponent("rekey")
        process.arguments = arguments
        process.environment = environment ?? ["REKEY_URL": system.base, "REKEY_API_KEY": key ?? system.apiKey, "HOME": system.folder.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let stdin = Pipe()
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try? stdin.fileHandleForWriting.close()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        waitForExit(process)
        return (process.terminationStatus, output)
    }
}

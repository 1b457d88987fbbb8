import Foundation
import RekeyTesting

/// Runs the real `rekey` executable against a ``RekeySystem``.
package enum RekeyCLI {
    package static func run(
        _ arguments: [String], system: RekeySystem, key: String? = nil, environment: [String: String]? = nil, input: String? = nil
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
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }
}

import RekeyTesting
import Testing

/// The helper every executable test starts its processes with: when one never comes up, its
/// error must say why without a second run.
@Suite("Starting a process for a test")
struct ServiceProcessTests {
    @Test("a process that never listens: the error holds its log and what each of its threads waits in")
    func neverListens() async throws {
        let error = await #expect(throws: ServiceProcessError.self) {
            try await ServiceProcess.start("/bin/sh", arguments: ["-c", "echo getting ready >&2; exec sleep 60"], startupLimit: 1)
        }
        let message = try #require(error).description
        #expect(message.contains("/bin/sh did not start listening"), "\(message)")
        #expect(message.contains("getting ready"), "its log: \(message)")
        #expect(message.contains("its threads, still running:"), "\(message)")
        #expect(message.contains(" sleep: S, waiting in "), "\(message)")
    }

    @Test("a process that exits before listening ends the wait at once, with its last words")
    func exitsEarly() async throws {
        let error = await #expect(throws: ServiceProcessError.self) {
            try await ServiceProcess.start("/bin/sh", arguments: ["-c", "echo no configuration >&2; exit 3"], startupLimit: 600)
        }
        let message = try #require(error).description
        #expect(message.contains("no configuration"), "\(message)")
        #expect(!message.contains("its threads"), "\(message)")
    }
}

import Foundation
import RekeyNotifierAPI
import RekeyRPC
import RekeyRPCNIO
import RekeyTesting
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The notifier's data folder on a small tmpfs, filled up for real: mounting needs root, which
/// CI and `make test` on the build machines have.
@Suite("A full disk under the notifier", .serialized, .enabled(if: geteuid() == 0, "mounting a tmpfs needs root"))
struct DiskFullTests {
    @Test("Enqueue says the disk is full (RESOURCE_EXHAUSTED), health says NOT_SERVING, and both recover by themselves once space is freed; nothing accepted is lost")
    func diskFull() async throws {
        let folder = try TemporaryFolder()
        let data = folder.path + "/data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let mount = try await ServiceProcess.run("/bin/mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", data])
        try #require(mount.status == 0, "mount: \(mount.output)")
        let process: ServiceProcess
        do {
            process = try await NotifierExecutableTests.start(dataDir: data, ["--mail-dir", folder.path + "/mail"])
        } catch {
            _ = try? await ServiceProcess.run("/bin/umount", ["-l", data])
            throw error
        }
        defer {
            // In order, on a thread of its own (a defer cannot wait off the concurrency pool): the
            // service exits, the tmpfs goes, then the folder.
            Thread {
                process.stop()
                _ = try? ServiceProcess.run("/bin/umount", ["-l", data])
                withExtendedLifetime(folder) {}
            }.start()
        }
        try await withRPCClient(port: process.port, credential: NotifierExecutableTests.credential) { client in
            let notifier = Rekey_Notifier_V1_Notifier.Client(wrapping: client)
            let health = Rekey_Health_V1_Health.Client(wrapping: client)
            let first = try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "jane@example.com"))
            #expect(first.status == .queued)

            // Fill the file system to the last byte.
            let filler = data + "/filler"
            FileManager.default.createFile(atPath: filler, contents: nil)
            let handle = try #require(FileHandle(forWritingAtPath: filler))
            let chunk = Data(repeating: 0, count: 64 << 10)
            while (try? handle.write(contentsOf: chunk)) != nil {}
            var small = Data(repeating: 0, count: 512)
            while !small.isEmpty, (try? handle.write(contentsOf: small)) == nil { small = small.prefix(small.count / 2) }
            try? handle.close()

            // Writes fail now; the call says why instead of INTERNAL.
            var refused: RPCError?
            for _ in 0..<500 where refused == nil {
                do {
                    _ = try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "jane@example.com"))
                } catch let error as RPCError {
                    refused = error
                }
            }
            let error = try #require(refused, "the full disk was never noticed")
            #expect(error.code == .resourceExhausted, "\(error)")
            #expect(error.message.contains("disk is full or unwritable"), "\(error.message)")
            #expect(try await health.check(.init()).status == .notServing)

            // Space comes back: the service sees it by itself and serves again.
            try FileManager.default.removeItem(atPath: filler)
            let deadline = ContinuousClock.now + .seconds(30)
            while try await health.check(.init()).status != .serving, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(try await health.check(.init()).status == .serving)
            let again = try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "jane@example.com"))
            #expect(again.status == .queued)
            var get = Rekey_Notifier_V1_GetMessageRequest()
            get.messageID = first.messageID
            #expect(try await notifier.getMessage(get).message?.id == first.messageID, "what was accepted before is still there")
        }
    }
}

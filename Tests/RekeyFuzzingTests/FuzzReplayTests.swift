import Foundation
import RekeyFuzzing
import Testing

/// Every seed of `make fuzz` and every crash it ever found (Fuzz/Corpus, Fuzz/Regressions),
/// replayed through the same target functions: a fixed crash that comes back fails here, in
/// `make test`, without a fuzzer.
@Suite("Fuzz seeds and regressions, replayed")
struct FuzzReplayTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func inputs(_ folder: String, _ target: String) -> [URL] {
        let directory = Self.root.appendingPathComponent("Fuzz/\(folder)/\(target)")
        return ((try? FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)) ?? []).sorted { $0.path < $1.path }
    }

    @Test(arguments: FuzzTargets.all.keys.sorted())
    func replay(_ target: String) throws {
        let run = try #require(FuzzTargets.all[target])
        let seeds = Self.inputs("Corpus", target)
        #expect(!seeds.isEmpty, "every target has a committed seed corpus")
        for input in seeds + Self.inputs("Regressions", target) {
            run(Array(try Data(contentsOf: input)))
        }
    }
}

import Foundation
import Testing

/// A trait for suites and tests that run the system's executables (or Chromium, Postfix): each
/// test case takes one of a few slots for as long as it runs, and waits for one while all are
/// taken. Swift Testing starts every suite of a run at once, so without it some twenty whole
/// systems ran side by side on two cores, and timers were seen to fire 15 s late.
///
/// One slot per test case, never more, taken before its body and given back after: a test never
/// waits for a slot while holding one, so the slots cannot deadlock. A test that waits on another
/// test (none does) must not be limited.
///
/// `REKEY_TEST_PROCESS_SLOTS` sets how many (default 4).
package struct ProcessSlots: SuiteTrait, TestTrait, TestScoping {
    package var isRecursive: Bool { true }

    package func scopeProvider(for test: Test, testCase: Test.Case?) -> ProcessSlots? {
        // Each case of each test function; not the suite, and not a test function as a whole.
        testCase == nil ? nil : self
    }

    package func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        await Self.pool.take()
        do {
            try await function()
        } catch {
            await Self.pool.giveBack()
            throw error
        }
        await Self.pool.giveBack()
    }

    package static let pool = Slots(count: Self.configuredCount(ProcessInfo.processInfo.environment["REKEY_TEST_PROCESS_SLOTS"]))

    /// 4 unless `setting` says otherwise; a setting that is not a whole number from 1 stops the
    /// run with a message, rather than being ignored.
    package static func configuredCount(_ setting: String?) -> Int {
        guard let setting else { return 4 }
        guard let count = Int(setting.trimmingCharacters(in: .whitespaces)), count >= 1 else {
            fatalError("REKEY_TEST_PROCESS_SLOTS must be a whole number from 1, got \"\(setting)\"")
        }
        return count
    }

    /// A counting semaphore whose waiters are served first come, first served.
    package actor Slots {
        private let count: Int
        private var free: Int
        private var waiters: [CheckedContinuation<Void, Never>] = []

        package init(count: Int) {
            self.count = count
            self.free = count
        }

        /// How many are taken.
        package var taken: Int { self.count - self.free }

        /// How many wait for a slot.
        package var waiting: Int { self.waiters.count }

        package func take() async {
            if self.free > 0 {
                self.free -= 1
                return
            }
            await withCheckedContinuation { self.waiters.append($0) }
        }

        package func giveBack() {
            if self.waiters.isEmpty {
                self.free += 1
            } else {
                // The slot passes straight to the longest waiter.
                self.waiters.removeFirst().resume()
            }
        }
    }
}

extension Trait where Self == ProcessSlots {
    /// Runs each test case in one of a few process slots: see ``ProcessSlots``.
    package static var processSlots: Self { ProcessSlots() }
}

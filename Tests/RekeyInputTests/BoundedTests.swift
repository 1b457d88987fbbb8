import RekeyInput
import Testing

@Suite("Bounded numbers from outside")
struct BoundedTests {
    /// What an attacker sends: each must be refused by name, never trap.
    @Test(arguments: ["-1", "0", "101", "2147483648", "4294967296", "9223372036854775808", "99999999999999999999999", "1e309", "abc", "", " 5", "5 ", "+5", "0x10", "--1", "1.0", "٣"])
    func refusesBadPageSizes(_ text: String) {
        #expect(throws: OutOfBounds(name: "page_size", allowed: "a whole number from 1 to 100")) {
            try Bounded.integer(text, "page_size", in: 1...100, default: 20)
        }
    }

    @Test func readsGoodValuesAndDefaults() throws {
        #expect(try Bounded.integer("1", "page_size", in: 1...100, default: 20) == 1)
        #expect(try Bounded.integer("100", "page_size", in: 1...100, default: 20) == 100)
        #expect(try Bounded.integer(nil as String?, "page_size", in: 1...100, default: 20) == 20)
        #expect(try Bounded.integer("-5", "offset", in: -10...10) == -5)
        #expect(throws: OutOfBounds.self) { try Bounded.integer(nil as String?, "n", in: 1...2) }
    }

    @Test func typedFieldsAndPageSizes() throws {
        #expect(try Bounded.pageSize(UInt32(0), default: 20, max: 100) == 20)
        #expect(try Bounded.pageSize(UInt32(7), default: 20, max: 100) == 7)
        #expect(throws: OutOfBounds(name: "page_size", allowed: "a whole number from 1 to 100 (0 for 20)")) {
            try Bounded.pageSize(UInt32.max, default: 20, max: 100)
        }
        #expect(throws: OutOfBounds.self) { try Bounded.integer(-1, "$.lifetime_days", in: 0...3650) }
        #expect(throws: OutOfBounds.self) { try Bounded.integer(UInt64.max, "limit", in: 0...500) }
        #expect(try Bounded.integer(Int64(3650), "$.lifetime_days", in: 0...3650) == 3650)
    }

    @Test(arguments: ["99999999999999999d", "9223372036854775807d", "-1d", "0x5d", "5", "d", "", "1e3d", "5w", "1.5h"])
    func refusesBadDurations(_ text: String) {
        #expect(throws: OutOfBounds.self) { try Bounded.duration(text, "since", in: Limits.diagnosisWindow) }
    }

    @Test func readsDurations() throws {
        #expect(try Bounded.duration("30m", "since", in: Limits.diagnosisWindow) == .seconds(1800))
        #expect(try Bounded.duration("90d", "since", in: Limits.diagnosisWindow) == .seconds(90 * 86_400))
        #expect(throws: OutOfBounds.self) { try Bounded.duration("91d", "since", in: Limits.diagnosisWindow) }
        #expect(Bounded.parseDuration("500ms") == .milliseconds(500))
        #expect(Bounded.format(.seconds(86_400 * 7)) == "7d")
        #expect(Bounded.format(.milliseconds(1500)) == "1500ms")
    }

    @Test func errorNamesTheParameterAndRange() {
        let error = OutOfBounds(name: "page_size", allowed: "a whole number from 1 to 100")
        #expect(error.description == "page_size must be a whole number from 1 to 100")
    }
}

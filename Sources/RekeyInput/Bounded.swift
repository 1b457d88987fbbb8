/// A number that came from outside (a query, a form, JSON, a config value, a protobuf field from
/// another service) was not a whole number within its allowed range.
///
/// Its description names the parameter and the range, in the caller's terms, so every layer can
/// show it as it is: a 400 from the gateway, INVALID_ARGUMENT from a service, a CLI message.
package struct OutOfBounds: Error, Hashable, Sendable, CustomStringConvertible {
    /// The parameter's name as the caller wrote it (`page_size`, `since`, `$.lifetime_days`).
    package var name: String
    /// What is allowed, such as `a whole number from 1 to 100`.
    package var allowed: String

    package init(name: String, allowed: String) {
        self.name = name
        self.allowed = allowed
    }

    package var description: String { "\(self.name) must be \(self.allowed)" }
}

/// The one way Rekey reads a bounded number from outside: parse without trapping, check the range,
/// and say what was wrong by name.
package enum Bounded {
    /// A whole number written in decimal (an optional leading `-`, digits only; no `+`, spaces,
    /// exponents or fractions). `nil` text means "not given" and yields `default`; text that is
    /// present but empty is refused like any other bad value.
    package static func integer(
        _ text: Substring?, _ name: String, in range: ClosedRange<Int>, default defaultValue: Int? = nil
    ) throws(OutOfBounds) -> Int {
        let failure = OutOfBounds(name: name, allowed: Self.describe(range))
        guard let text else {
            guard let defaultValue else { throw OutOfBounds(name: name, allowed: "given (\(Self.describe(range)))") }
            return defaultValue
        }
        guard let value = Self.parseDecimal(text), range.contains(value) else { throw failure }
        return value
    }

    package static func integer(
        _ text: String?, _ name: String, in range: ClosedRange<Int>, default defaultValue: Int? = nil
    ) throws(OutOfBounds) -> Int {
        try Self.integer(text.map { Substring($0) }, name, in: range, default: defaultValue)
    }

    /// Checks a number that arrived already typed (a protobuf or JSON integer field).
    package static func integer<T: BinaryInteger>(_ value: T, _ name: String, in range: ClosedRange<Int>) throws(OutOfBounds) -> Int {
        guard let exact = Int(exactly: value), range.contains(exact) else {
            throw OutOfBounds(name: name, allowed: Self.describe(range))
        }
        return exact
    }

    /// A protobuf page size, where 0 means "the default".
    package static func pageSize<T: BinaryInteger>(_ value: T, _ name: String = "page_size", default defaultValue: Int, max: Int) throws(OutOfBounds) -> Int {
        if value == 0 { return defaultValue }
        guard let exact = Int(exactly: value), (1...max).contains(exact) else {
            throw OutOfBounds(name: name, allowed: "a whole number from 1 to \(max) (0 for \(defaultValue))")
        }
        return exact
    }

    /// A duration written as a whole number and a unit: `500ms`, `90s`, `30m`, `24h`, `7d`.
    /// Never traps, however large the number.
    package static func duration(_ text: Substring, _ name: String, in range: ClosedRange<Duration>) throws(OutOfBounds) -> Duration {
        guard let value = Self.parseDuration(text), range.contains(value) else {
            throw OutOfBounds(
                name: name,
                allowed: "a duration such as 90s, 30m, 12h or 7d, from \(Self.format(range.lowerBound)) to \(Self.format(range.upperBound))"
            )
        }
        return value
    }

    package static func duration(_ text: String, _ name: String, in range: ClosedRange<Duration>) throws(OutOfBounds) -> Duration {
        try Self.duration(Substring(text), name, in: range)
    }

    /// `500ms`, `90s`, `30m`, `24h`, `7d` → a duration; nil for anything else or an overflow.
    package static func parseDuration(_ text: Substring) -> Duration? {
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        for (suffix, milliseconds) in units where text.hasSuffix(suffix) {
            guard let number = Self.parseDecimal(text.dropLast(suffix.count)), number >= 0 else { return nil }
            let (total, overflow) = Int64(number).multipliedReportingOverflow(by: milliseconds)
            return overflow ? nil : .milliseconds(total)
        }
        return nil
    }

    /// The shortest exact way to write `duration` in the units above.
    package static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        guard !overflow else { return "\(seconds)s" }
        let milliseconds = scaled + attoseconds / 1_000_000_000_000_000
        for (suffix, unit) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1000)]
        where milliseconds % unit == 0 && milliseconds >= unit {
            return "\(milliseconds / unit)\(suffix)"
        }
        return "\(milliseconds)ms"
    }

    /// At most 18 digits, so the value always fits; longer text is out of every range Rekey has.
    static func parseDecimal(_ text: Substring) -> Int? {
        var digits = text.utf8[...]
        let negative = digits.first == UInt8(ascii: "-")
        if negative { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else {
            return nil
        }
        let magnitude = digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        return negative ? -magnitude : magnitude
    }

    static func describe(_ range: ClosedRange<Int>) -> String {
        "a whole number from \(range.lowerBound) to \(range.upperBound)"
    }
}

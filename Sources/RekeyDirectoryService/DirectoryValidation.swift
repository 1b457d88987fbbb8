import RekeyInput

/// Input rules of the directory. Limits: names 1-200 characters, locales BCP 47 up to 35,
/// email addresses up to 254 (local part up to 64), organization domains up to 253.
enum DirectoryValidation {
    static let maxNameLength = 200

    /// A person's or organization's name, trimmed: 1-200 characters, no control characters.
    static func name(_ value: String, field: String) throws -> String {
        let trimmed = value.trimmed
        guard !trimmed.isEmpty else {
            throw DirectoryError.invalidArgument("\(field) is required")
        }
        guard trimmed.count <= Self.maxNameLength else {
            throw DirectoryError.invalidArgument("\(field) is longer than \(Self.maxNameLength) characters")
        }
        guard !trimmed.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw DirectoryError.invalidArgument("\(field) contains control characters")
        }
        return trimmed
    }

    /// A BCP 47 tag such as `en` or `de-CH`; empty means `en`.
    static func locale(_ value: String) throws -> String {
        if value.isEmpty { return "en" }
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        let valid = value.utf8.count <= 35
            && (2...3).contains(parts[0].count) && parts[0].allSatisfy { $0.isASCII && $0.isLetter }
            && parts.dropFirst().allSatisfy { (1...8).contains($0.count) && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } }
        guard valid else {
            throw DirectoryError.invalidArgument("locale `\(value)` is not a language tag such as en or de-CH")
        }
        return value
    }

    /// An email address: returns it trimmed, and its normalized (lower-case) form for comparing.
    static func email(_ value: String, field: String = "email") throws -> (address: String, normalized: String) {
        // NFC, so that one address typed two ways (é as one or two code points) is one address.
        let address = value.trimmed.precomposedStringWithCanonicalMapping
        guard !address.isEmpty else {
            throw DirectoryError.invalidArgument("\(field) is required")
        }
        if let hidden = address.unicodeScalars.first(where: Self.isInvisible) {
            let code = "U+" + String(hidden.value, radix: 16, uppercase: true).leftPadded(to: 4)
            throw DirectoryError.invalidArgument(
                "\(field) contains an invisible or formatting character (\(code)); type the address again without it"
            )
        }
        let parts = address.split(separator: "@", omittingEmptySubsequences: false)
        guard address.utf8.count <= 254, parts.count == 2 else {
            throw DirectoryError.invalidArgument("\(field) `\(address)` is not an email address")
        }
        let local = parts[0]
        let domain = parts[1]
        let localAllowed = local.unicodeScalars.allSatisfy { scalar in
            scalar.value > 0x7F || (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "!#$%&'*+/=?^_`{|}~.-".unicodeScalars.contains(scalar))
        }
        guard !local.isEmpty, local.utf8.count <= 64, localAllowed, !local.hasPrefix("."), !local.hasSuffix("."), !local.contains(".."),
              Self.isHostname(String(domain), encodedLengths: false), domain.contains(".")
        else {
            throw DirectoryError.invalidArgument("\(field) `\(address)` is not an email address")
        }
        if let reason = Self.undeliverable(domain: String(domain)) {
            throw DirectoryError.invalidArgument("\(field) `\(address)` can never receive mail: \(reason)")
        }
        return (address, address.lowercased())
    }

    /// Why no mail can ever reach a well-formed domain, or nil. Said when the address is given,
    /// rather than found out when a reset email fails.
    static func undeliverable(domain: String) -> String? {
        let lowered = domain.lowercased()
        let top = lowered.split(separator: ".").last ?? ""
        if !top.isEmpty, top.utf8.allSatisfy({ (0x30...0x39).contains($0) }) {
            return "no domain ends in a number (an IP address is not a mail domain)"
        }
        if top == "invalid" || top == "localhost" {
            return "`.\(top)` names never exist on the internet (RFC 6761)"
        }
        if IDNA.asciiDomain(lowered) == nil {
            return "its domain is too long once written in DNS's ASCII form (IDNA allows 63 characters a label, 253 in all)"
        }
        return nil
    }

    /// Characters a person cannot see or that change how text is laid out: controls, format
    /// characters (zero-width space, bidi marks), line and paragraph separators, spaces other than
    /// the plain one, private-use and unassigned code points.
    static func isInvisible(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .privateUse, .surrogate, .unassigned:
            return true
        case .spaceSeparator:
            return scalar != " "  // a plain space is simply not allowed in an address, said as such
        default:
            return false
        }
    }

    /// A DNS name: labels of letters, digits and hyphens (any script), not starting or ending
    /// with a hyphen, each at most 63 characters in DNS's ASCII form (IDNA for a non-ASCII label,
    /// unless `encodedLengths` is false: then the caller checks, to say why).
    static func isHostname(_ value: String, encodedLengths: Bool = true) -> Bool {
        guard !value.isEmpty, value.utf8.count <= 253 else { return false }
        return value.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            !label.isEmpty && !label.hasPrefix("-") && !label.hasSuffix("-")
                && (label.utf8.allSatisfy { $0 < 0x80 } ? label.utf8.count <= 63 : !encodedLengths || IDNA.asciiDomain(String(label)) != nil)
                && label.unicodeScalars.allSatisfy { $0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" }
        }
    }

    /// An id this service made: a prefix and 32 hex digits.
    static func id(_ value: String, prefix: String, field: String) throws {
        guard !value.isEmpty else {
            throw DirectoryError.invalidArgument("\(field) is required")
        }
        guard value.hasPrefix(prefix), value.utf8.count == prefix.utf8.count + 32,
              value.utf8.dropFirst(prefix.utf8.count).allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
        else {
            throw DirectoryError.invalidArgument("\(field) `\(value.prefix(80))` is not an id this service made")
        }
    }

    /// A custom role's name: 2-40 of a-z, 0-9, '-' and '_'.
    static func roleName(_ value: String) throws {
        guard (2...40).contains(value.utf8.count),
              value.utf8.allSatisfy({ (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") })
        else {
            throw DirectoryError.invalidArgument("role name `\(value.prefix(80))` must be 2-40 of a-z, 0-9, - and _")
        }
    }
}

import Foundation

extension String {
    /// The string without leading and trailing white space and line breaks; without Foundation's
    /// bridging, which costs more than the rest of checking an imported row.
    var trimmed: String {
        guard let first = self.firstIndex(where: { !$0.isWhitespace }) else { return "" }
        let last = self.lastIndex(where: { !$0.isWhitespace })!
        if first == self.startIndex && last == self.index(before: self.endIndex) { return self }
        return String(self[first...last])
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - self.count)) + self
    }
}

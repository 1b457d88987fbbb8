import Foundation

/// Folds text to a look-alike skeleton in the manner of Unicode TR39: decompose, replace each
/// character that looks like a plain ASCII one with that character (Cyrillic `а` with `a`,
/// fullwidth `ａ` with `a`, `1` and `I` with `l`), drop combining marks, lower-case. Two addresses
/// with the same skeleton look alike to a person; the directory uses it to warn an admin who adds
/// one (``DirectoryStore/lookAlikeWarnings(for:excludingUser:in:)``).
///
/// The table comes from Unicode's confusables data (`scripts/make-confusables.py`).
package enum LookAlike {
    private static let prototypes: [UInt32: Unicode.Scalar] = {
        var map: [UInt32: Unicode.Scalar] = [:]
        for pair in Self.table.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let parts = pair.split(separator: ":")
            guard parts.count == 2, let source = UInt32(parts[0], radix: 16), let target = UInt32(parts[1], radix: 16),
                  let scalar = Unicode.Scalar(target)
            else { continue }
            map[source] = scalar
        }
        return map
    }()

    package static func skeleton(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in text.lowercased().decomposedStringWithCanonicalMapping.unicodeScalars {
            if scalar.properties.generalCategory == .nonspacingMark { continue }
            out.append(Self.prototypes[scalar.value] ?? scalar)
        }
        return String(out).lowercased()
    }
}

import RekeyProtobuf
import Testing

/// `ProtobufStringSchema.isUTF8WithoutNUL` is hand-written for speed; the standard library's
/// decoder is the reference it must agree with on every input.
@Suite("UTF-8 validation of received strings")
struct UTF8ValidationTests {
    static func reference(_ bytes: [UInt8]) -> Bool {
        !bytes.contains(0) && String(validating: bytes, as: UTF8.self) != nil
    }

    static func fast(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { ProtobufStringSchema.isUTF8WithoutNUL($0) }
    }

    @Test("the boundaries of table 3-7: overlong forms, surrogates, above U+10FFFF, truncation", arguments: [
        ([], true),
        ([0x41], true),
        ([0x00], false),
        ([0x7F], true),
        ([0x80], false),
        ([0xC0, 0x80], false),  // overlong NUL
        ([0xC1, 0xBF], false),
        ([0xC2, 0x80], true),
        ([0xDF, 0xBF], true),
        ([0xDF], false),
        ([0xE0, 0x9F, 0x80], false),  // overlong
        ([0xE0, 0xA0, 0x80], true),
        ([0xED, 0x9F, 0xBF], true),
        ([0xED, 0xA0, 0x80], false),  // a surrogate
        ([0xEF, 0xBF, 0xBF], true),
        ([0xEF, 0xBF], false),
        ([0xF0, 0x8F, 0xBF, 0xBF], false),  // overlong
        ([0xF0, 0x90, 0x80, 0x80], true),
        ([0xF4, 0x8F, 0xBF, 0xBF], true),  // U+10FFFF
        ([0xF4, 0x90, 0x80, 0x80], false),  // above U+10FFFF
        ([0xF5, 0x80, 0x80, 0x80], false),
        ([0xFF], false),
        ([0xE2, 0x82, 0x41], false),  // a continuation byte missing
        (Array("abcdefgh\u{0}ijklmnop".utf8), false),  // NUL inside the eight-byte fast path
        (Array("abcdefghijklmnopqrstuvwxyz ünïcode ✓ 𝄞".utf8), true),
    ] as [([UInt8], Bool)])
    func boundaries(bytes: [UInt8], valid: Bool) {
        #expect(Self.reference(bytes) == valid)
        #expect(Self.fast(bytes) == valid)
    }

    @Test("agrees with the standard library on random bytes and random text")
    func randomInputs() {
        var generator = SystemRandomNumberGenerator()
        let alphabet: [UInt8] = [0x00, 0x41, 0x7F, 0x80, 0xBF, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF, 0x9F, 0xA0, 0x8F, 0x90]
        for round in 0..<20_000 {
            let length = Int.random(in: 0...24, using: &generator)
            var bytes: [UInt8]
            if round % 2 == 0 {
                // Bytes near the boundaries, where mistakes would be.
                bytes = (0..<length).map { _ in alphabet.randomElement(using: &generator)! }
            } else {
                // Valid text with one byte changed now and then.
                let scalars = (0..<length).map { _ in
                    Unicode.Scalar([0x41, 0xE9, 0x20AC, 0x1D11E, 0x10FFFF, 0xD7FF].randomElement(using: &generator)!)!
                }
                bytes = Array(String(String.UnicodeScalarView(scalars)).utf8)
                if !bytes.isEmpty, Bool.random(using: &generator) {
                    bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                }
            }
            #expect(Self.fast(bytes) == Self.reference(bytes), "disagree on \(bytes)")
        }
    }
}

/// Which fields of a message (and of the messages inside it) are `string` fields.
///
/// protobuf-c 1.4 hands strings to C as NUL-terminated `char *` without checking them: a string
/// holding a NUL byte would be silently cut short, and invalid UTF-8 would pass. Generated decoders
/// therefore scan the wire bytes of every string field with this schema before unpacking, and
/// reject such messages. Generated code makes one per message type.
package struct ProtobufStringSchema: Sendable {
    package let stringFields: Set<UInt32>
    /// Message-typed fields whose message (transitively) has string fields; resolved lazily so that
    /// schemas can refer to each other.
    package let messageFields: [UInt32: @Sendable () -> ProtobufStringSchema]

    /// `stringFields` below 64 as bits, so that the scan of every received field needs no hashing.
    private let smallStringFields: UInt64

    package init(stringFields: Set<UInt32>, messageFields: [UInt32: @Sendable () -> ProtobufStringSchema]) {
        self.stringFields = stringFields
        self.messageFields = messageFields
        self.smallStringFields = stringFields.reduce(0) { $1 < 64 ? $0 | 1 << UInt64($1) : $0 }
    }

    private func isStringField(_ field: UInt32) -> Bool {
        field < 64 ? self.smallStringFields & (1 << UInt64(field)) != 0 : self.stringFields.contains(field)
    }

    /// Throws unless every string field in `bytes` is valid UTF-8 without NUL characters.
    ///
    /// Structural errors found on the way (truncation, bad wire types) throw too; protobuf-c would
    /// reject them anyway.
    package func validate(_ bytes: UnsafeRawBufferPointer, message: String) throws {
        guard self.isValid(bytes) else {
            throw ProtobufError.invalidEncoding(message: message)
        }
    }

    private func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var index = 0
        let count = bytes.count
        func readVarint() -> UInt64? {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while index < count, shift < 64 {
                let byte = bytes[index]
                index += 1
                result |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return result }
                shift += 7
            }
            return nil
        }
        while index < count {
            guard let key = readVarint() else { return false }
            let field = UInt32(truncatingIfNeeded: key >> 3)
            switch key & 7 {
            case 0:
                guard readVarint() != nil else { return false }
            case 1:
                index += 8
            case 5:
                index += 4
            case 2:
                guard let length = readVarint(), length <= UInt64(count - index) else { return false }
                let start = index
                index += Int(length)
                let value = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
                if self.isStringField(field) {
                    guard Self.isUTF8WithoutNUL(value) else { return false }
                } else if !self.messageFields.isEmpty, let nested = self.messageFields[field] {
                    guard nested().isValid(value) else { return false }
                }
            default:
                return false  // groups (3, 4) are not proto3; 6 and 7 do not exist
            }
        }
        return index == count
    }

    /// Whether `bytes` is well-formed UTF-8 (Unicode 15, table 3-7: no overlong forms, no
    /// surrogates, nothing above U+10FFFF) without a NUL character.
    ///
    /// Runs on every string field of every message received, so it allocates nothing and takes
    /// ASCII eight bytes at a time; `String(validating:)` builds a string it would throw away.
    package static func isUTF8WithoutNUL(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        var index = 0
        while index < count {
            // Eight ASCII bytes at once: no high bit set and no zero byte.
            if index + 8 <= count {
                let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                let highBits: UInt64 = 0x8080_8080_8080_8080
                let hasZero = (word &- 0x0101_0101_0101_0101) & ~word & highBits
                if word & highBits == 0, hasZero == 0 {
                    index += 8
                    continue
                }
            }
            let lead = bytes[index]
            if lead < 0x80 {
                guard lead != 0 else { return false }
                index += 1
                continue
            }
            // The length of the sequence and the range its second byte must fall in.
            let length: Int
            var low: UInt8 = 0x80
            var high: UInt8 = 0xBF
            switch lead {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; high = 0x9F
            case 0xF0: length = 4; low = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; high = 0x8F
            default: return false  // 80...C1 (continuation or overlong) and F5...FF
            }
            guard index + length <= count else { return false }
            let second = bytes[index + 1]
            guard second >= low, second <= high else { return false }
            for offset in 2..<length where bytes[index + offset] & 0xC0 != 0x80 {
                return false
            }
            index += length
        }
        return true
    }
}

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

    package init(stringFields: Set<UInt32>, messageFields: [UInt32: @Sendable () -> ProtobufStringSchema]) {
        self.stringFields = stringFields
        self.messageFields = messageFields
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
                if self.stringFields.contains(field) {
                    guard !value.contains(0), String(validating: value, as: UTF8.self) != nil else { return false }
                } else if let nested = self.messageFields[field] {
                    guard nested().isValid(value) else { return false }
                }
            default:
                return false  // groups (3, 4) are not proto3; 6 and 7 do not exist
            }
        }
        return index == count
    }
}

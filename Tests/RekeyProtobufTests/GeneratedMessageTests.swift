import RekeyProtobuf
import RekeyRPC
import RekeyTesting
import Testing

@Suite("Generated messages")
struct GeneratedMessageTests {
    typealias Everything = Rekey_Testing_V1_Everything

    static func fullySet() -> Everything {
        var inner = Rekey_Testing_V1_Inner()
        inner.name = "inner ünïcode ✓"
        inner.numbers = [1, -2, .max, .min]
        var message = Everything()
        message.anInt32 = -42
        message.anInt64 = .min
        message.aUint32 = .max
        message.aUint64 = .max
        message.aSint32 = -7
        message.aSint64 = -(1 << 40)
        message.aFixed32 = 0xDEAD_BEEF
        message.aFixed64 = 0xDEAD_BEEF_CAFE_F00D
        message.aSfixed32 = -3
        message.aSfixed64 = -4
        message.aBool = true
        message.aFloat = 1.5
        message.aDouble = -2.25
        message.aString = "héllo"
        message.someBytes = [0, 1, 2, 255, 0]
        message.color = .green
        message.inner = inner
        message.strings = ["a", "", "ç"]
        message.blobs = [[], [0], [1, 2, 3]]
        message.colors = [.red, .unrecognized(99), .unspecified]
        message.inners = [inner, Rekey_Testing_V1_Inner()]
        message.doubles = [0, -0.5, .infinity]
        message.bools = [true, false, true]
        message.choice = .choiceInner(inner)
        var nested = Everything.Nested()
        nested.level = .high
        message.nested = nested
        return message
    }

    @Test("every field kind survives an encode and decode")
    func roundTrip() throws {
        let message = Self.fullySet()
        let decoded = try Everything(serializedBytes: message.serializedBytes())
        #expect(decoded == message)
    }

    @Test("each oneof case round-trips, and an unset oneof stays unset", arguments: [
        Everything.OneOf_Choice?.none,
        .choiceText(""),
        .choiceText("text"),
        .choiceNumber(0),
        .choiceNumber(-9),
        .choiceInner(Rekey_Testing_V1_Inner()),
    ])
    func oneofCases(choice: Everything.OneOf_Choice?) throws {
        var message = Everything()
        message.choice = choice
        let decoded = try Everything(serializedBytes: message.serializedBytes())
        #expect(decoded.choice == choice)
    }

    @Test("a default message encodes to no bytes, and no bytes decode to the default message")
    func defaults() throws {
        #expect(try Everything().serializedBytes() == [])
        #expect(try Everything(serializedBytes: [UInt8]()) == Everything())
        #expect(try Rekey_Health_V1_HealthCheckRequest(serializedBytes: [UInt8]()).service == "")
    }

    @Test("the encoding is plain protobuf, byte for byte")
    func wireBytes() throws {
        var request = Rekey_Health_V1_HealthCheckRequest()
        request.service = "x"
        #expect(try request.serializedBytes() == [0x0A, 0x01, 0x78])

        var envelope = Rekey_Rpc_V1_Request()
        envelope.callID = 1
        envelope.method = "/a/B"
        envelope.timeoutMicros = 300
        #expect(try envelope.serializedBytes() == [0x08, 0x01, 0x12, 0x04, 0x2F, 0x61, 0x2F, 0x42, 0x18, 0xAC, 0x02])
    }

    @Test("enum values this contract does not know are kept")
    func openEnums() throws {
        var message = Everything()
        message.color = .unrecognized(1234)
        let decoded = try Everything(serializedBytes: message.serializedBytes())
        #expect(decoded.color == .unrecognized(1234))
        #expect(decoded.color.rawValue == 1234)
        #expect(Rekey_Testing_V1_Color(rawValue: 1) == .red)
    }

    @Test("bytes that are not protobuf are rejected with an error", arguments: [
        [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],  // a varint that never ends
        [0x72, 0x05, 0x61],  // a string field that claims more bytes than there are
        [0x07],  // wire type 7 does not exist
        [0x8A, 0x01, 0x02, 0xFF, 0xFF],  // field 17 (a message) holding garbage
    ] as [[UInt8]])
    func garbage(bytes: [UInt8]) {
        #expect(throws: ProtobufError.invalidEncoding(message: "rekey.testing.v1.Everything")) {
            try Everything(serializedBytes: bytes)
        }
    }

    @Test("a string field holding invalid UTF-8 is rejected")
    func invalidUTF8() {
        // Field 14 (a_string), length 2, bytes C3 28: an invalid two-byte sequence.
        #expect(throws: ProtobufError.invalidEncoding(message: "rekey.testing.v1.Everything")) {
            try Everything(serializedBytes: [0x72, 0x02, 0xC3, 0x28])
        }
    }

    @Test("a string with a NUL character is refused when encoding, not cut short")
    func embeddedNULEncoding() {
        var message = Everything()
        message.aString = "admin@example.com\u{0}evil"
        #expect(throws: ProtobufError.embeddedNUL(message: "rekey.testing.v1.Everything", field: "a_string")) {
            try message.serializedBytes()
        }
        var inner = Rekey_Testing_V1_Inner()
        inner.name = "a\u{0}"
        message.aString = ""
        message.inners = [inner]
        #expect(throws: ProtobufError.embeddedNUL(message: "rekey.testing.v1.Inner", field: "name")) {
            try message.serializedBytes()
        }
    }

    @Test("a received string with a NUL character is rejected, not cut short")
    func embeddedNULDecoding() {
        // Field 14 (a_string) = "a\0b"; field 18 (strings) = ["x\0"]; Inner.name (field 17 → 1) = "\0".
        let cases: [[UInt8]] = [
            [0x72, 0x03, 0x61, 0x00, 0x62],
            [0x92, 0x01, 0x02, 0x78, 0x00],
            [0x8A, 0x01, 0x03, 0x0A, 0x01, 0x00],
        ]
        for bytes in cases {
            #expect(throws: ProtobufError.self) {
                try Everything(serializedBytes: bytes)
            }
        }
    }
}

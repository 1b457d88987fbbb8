import NIOCore
import NIOEmbedded
import NIOTestUtils
import RekeyRPCNIO
import Testing

@Suite("FrameDecoder")
struct FrameDecoderTests {
    static func frame(_ body: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(body.count), endianness: .big)
        buffer.writeBytes(body)
        return buffer
    }

    @Test("frames come out whole however the bytes are split or joined")
    func verifier() throws {
        let inputs: [(ByteBuffer, [ByteBuffer])] = [
            (Self.frame([1, 2, 3]), [ByteBuffer(bytes: [1, 2, 3])]),
            (Self.frame([]), [ByteBuffer()]),
            (Self.frame(Array(repeating: 7, count: 1000)), [ByteBuffer(bytes: Array(repeating: 7, count: 1000))]),
        ]
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: inputs) {
            FrameDecoder(maxFrameSize: 1 << 20)
        }
    }

    @Test("a length over the limit fails as soon as the prefix arrives, before any body is buffered")
    func oversized() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maxFrameSize: 1024)))
        var prefix = ByteBuffer()
        prefix.writeInteger(UInt32(0x7FFF_FFFF), endianness: .big)
        #expect(throws: FrameError.frameTooLarge(length: 0x7FFF_FFFF, limit: 1024)) {
            try channel.writeInbound(prefix)
        }
        _ = try? channel.finish()
    }

    @Test("a frame of exactly the limit is accepted")
    func atTheLimit() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maxFrameSize: 16)))
        try channel.writeInbound(Self.frame(Array(repeating: 1, count: 16)))
        #expect(try channel.readInbound(as: ByteBuffer.self)?.readableBytes == 16)
        #expect(try channel.finish().isClean)
    }

    @Test("a connection that ends in the middle of a frame is reported")
    func truncated() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maxFrameSize: 1024)))
        var partial = Self.frame([1, 2, 3, 4])
        partial.moveWriterIndex(to: partial.writerIndex - 2)
        try channel.writeInbound(partial)
        #expect(throws: FrameError.truncatedFrame(bytes: 6)) {
            try channel.finish()
        }
    }
}

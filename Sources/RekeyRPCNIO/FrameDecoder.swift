import NIOCore
import RekeyProtobuf

/// Splits a byte stream into frames: a 4-byte big-endian length, then that many bytes.
///
/// The length is checked against the limit before any of the frame is buffered, so a peer cannot
/// make the process hold more than one maximum-size frame per connection.
package struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    package typealias InboundOut = ByteBuffer

    /// Bytes of the length prefix.
    package static let prefixLength = 4

    package let maxFrameSize: Int

    package init(maxFrameSize: Int) {
        self.maxFrameSize = maxFrameSize
    }

    package mutating func decode(buffer: inout ByteBuffer) throws -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self) else {
            return nil
        }
        guard length <= self.maxFrameSize else {
            throw FrameError.frameTooLarge(length: Int(length), limit: self.maxFrameSize)
        }
        guard buffer.readableBytes >= Self.prefixLength + Int(length) else {
            return nil
        }
        buffer.moveReaderIndex(forwardBy: Self.prefixLength)
        return buffer.readSlice(length: Int(length))
    }

    package mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> ByteBuffer? {
        if let frame = try self.decode(buffer: &buffer) {
            return frame
        }
        if buffer.readableBytes > 0 {
            let bytes = buffer.readableBytes
            buffer.moveReaderIndex(to: buffer.writerIndex)
            throw FrameError.truncatedFrame(bytes: bytes)
        }
        return nil
    }
}

/// A violation of the framing or envelope rules; the connection that sent it is closed.
package enum FrameError: Error, Hashable, CustomStringConvertible {
    case frameTooLarge(length: Int, limit: Int)
    case truncatedFrame(bytes: Int)

    package var description: String {
        switch self {
        case .frameTooLarge(let length, let limit):
            return "a frame announced \(length) bytes, over the \(limit)-byte limit"
        case .truncatedFrame(let bytes):
            return "the connection closed in the middle of a frame (\(bytes) bytes left over)"
        }
    }
}

extension ByteBuffer {
    /// Appends one frame holding `message`'s encoding.
    ///
    /// - Throws: `RPCError` RESOURCE_EXHAUSTED when the encoding is larger than `maxFrameSize`.
    mutating func writeFrame(of message: some ProtobufMessage, maxFrameSize: Int) throws {
        try message.serialize { size, pack in
            guard size <= maxFrameSize else {
                throw FrameSizeExceeded(size: size, limit: maxFrameSize)
            }
            self.reserveCapacity(minimumWritableBytes: FrameDecoder.prefixLength + size)
            self.writeInteger(UInt32(size), endianness: .big)
            self.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { destination in
                pack(destination.baseAddress!)
            }
        }
    }
}

/// An outgoing message too large to send in one frame.
struct FrameSizeExceeded: Error {
    var size: Int
    var limit: Int
}

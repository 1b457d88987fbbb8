#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import RekeyProtobuf
import RekeyRPC
import RekeyRPCNIO

/// A bare TCP connection to an RPC server, for tests that must send what a well-behaved client
/// never would: garbage, oversized length prefixes, duplicate call ids.
package struct RawConnection {
    package typealias Channel = NIOAsyncChannel<ByteBuffer, ByteBuffer>

    /// Connects, runs `body`, and closes the connection.
    package static func with<R: Sendable>(
        port: Int,
        maxFrameSize: Int = 64 << 20,
        autoRead: Bool = true,
        _ body: (NIOAsyncChannelInboundStream<ByteBuffer>, NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws -> R
    ) async throws -> R {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.autoRead, value: autoRead)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameSize: maxFrameSize)))
                    return try Channel(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true)
                    )
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await body(inbound, outbound)
        }
    }

    /// A frame holding `bytes`.
    package static func frame(_ bytes: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(bytes.count), endianness: .big)
        buffer.writeBytes(bytes)
        return buffer
    }

    /// A frame holding a request envelope.
    package static func request(
        callID: UInt64,
        method: MethodDescriptor,
        message: some ProtobufMessage,
        credential: String? = testCredential
    ) throws -> ByteBuffer {
        var request = Rekey_Rpc_V1_Request()
        request.callID = callID
        request.method = method.fullyQualifiedMethod
        request.payload = try message.serializedBytes()
        if let credential {
            var entry = Rekey_Rpc_V1_MetadataEntry()
            entry.key = MetadataKey.authorization
            entry.value = "Bearer \(credential)"
            request.metadata = [entry]
        }
        return Self.frame(try request.serializedBytes())
    }

    /// Decodes a response frame.
    package static func response(_ frame: ByteBuffer) throws -> Rekey_Rpc_V1_Response {
        try frame.withUnsafeReadableBytes { try Rekey_Rpc_V1_Response(serializedBytes: $0) }
    }
}

extension NIOAsyncChannelInboundStream<ByteBuffer> {
    /// Reads until the peer closes; returns the frames that came before. A reset counts as
    /// closing: a peer that closes with bytes of ours still unread makes its kernel send RST
    /// rather than FIN (a server hanging up on a client in mid-frame, whose bytes were in flight).
    package func collectUntilClosed() async throws -> [ByteBuffer] {
        var frames: [ByteBuffer] = []
        do {
            for try await frame in self {
                frames.append(frame)
            }
        } catch let error as IOError where error.errnoCode == ECONNRESET {
            return frames
        }
        return frames
    }
}

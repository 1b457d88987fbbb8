// Two more rows for `make bench`, to show what each of Rekey's layers costs:
//
//   RekeyBenchmark nio-server                   a bare SwiftNIO echo: frame decoder and one handler
//                                               that decodes the EchoRequest with protobuf-c and
//                                               writes an EchoResponse (no envelope, router or
//                                               interceptors); prints its port
//   RekeyBenchmark nio-client PORT CALLERS SECONDS
//                                               CALLERS connections, one call in flight on each
//   RekeyBenchmark make-certs DIR               a CA and directory/gateway certificates (RekeyPKI)
//   RekeyBenchmark server --tls DIR             the Rekey server with mutual TLS
//   RekeyBenchmark client PORT CALLERS SECONDS --tls DIR
//   RekeyBenchmark handshakes PORT COUNT [--tls DIR]
//                                               COUNT new connections, one by one, each making one
//                                               call: prints "count seconds p50_us p99_us"

import Foundation
import Logging
import NIOCore
import NIOPosix
import RekeyPKI
import RekeyRPC
import RekeyRPCNIO
import RekeyTesting

// MARK: The bare NIO echo

/// Decodes an EchoRequest frame with protobuf-c and answers an EchoResponse with the same text.
final class BareEchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        guard let request = try? frame.withUnsafeReadableBytes({ try Rekey_Testing_V1_EchoRequest(serializedBytes: $0) }) else {
            context.close(promise: nil)
            return
        }
        var response = Rekey_Testing_V1_EchoResponse()
        response.text = request.text
        guard let bytes = try? response.serializedBytes() else {
            context.close(promise: nil)
            return
        }
        var out = context.channel.allocator.buffer(capacity: 4 + bytes.count)
        out.writeInteger(UInt32(bytes.count))
        out.writeBytes(bytes)
        context.write(Self.wrapOutboundOut(out), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

func runBareServer() async throws {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.backlog, value: 256)
        .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandlers(ByteToMessageHandler(FrameDecoder(maxFrameSize: 1 << 20)), BareEchoHandler())
            }
        }
        .bind(host: "127.0.0.1", port: 0)
        .get()
    print(channel.localAddress!.port!)
    fflush(nil)
    try await NIOThreadPool.singleton.runIfActive {
        while getchar() != EOF {}
    }
    try await channel.close()
}

/// One call at a time on its connection: completes the waiting call when its answer arrives.
final class BareClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var waiting: EventLoopPromise<Void>?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.waiting?.succeed()
        self.waiting = nil
    }
}

func runBareClient(port: Int, callers: Int, seconds: Double) async throws {
    var request = Rekey_Testing_V1_EchoRequest()
    request.text = makeRequest().text
    let payload = try request.serializedBytes()
    var connections: [(any Channel, NIOLoopBound<BareClientHandler>)] = []
    for _ in 0..<callers {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(ByteToMessageHandler(FrameDecoder(maxFrameSize: 1 << 20)), BareClientHandler())
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        let handler = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: BareClientHandler.self), eventLoop: channel.eventLoop)
        }.get()
        connections.append((channel, handler))
    }
    let all = connections
    try await measure(callers: callers, seconds: seconds) { caller, _ in
        let (channel, handler) = all[caller]
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.eventLoop.execute {
            handler.value.waiting = promise
            var frame = channel.allocator.buffer(capacity: 4 + payload.count)
            frame.writeInteger(UInt32(payload.count))
            frame.writeBytes(payload)
            channel.writeAndFlush(frame, promise: nil)
        }
        try await promise.futureResult.get()
    }
    for (channel, _) in all {
        try? await channel.close()
    }
}

// MARK: Mutual TLS

func makeCertificates(in folder: String) throws {
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    let ca = try DeploymentPKI.makeCA(trustDomain: "rekey")
    try ca.certificatePEM.write(toFile: folder + "/ca.pem", atomically: true, encoding: .utf8)
    for workload in ["directory", "gateway"] {
        let issued = try DeploymentPKI.issue(workload: workload, caCertificatePEM: ca.certificatePEM, caKeyPEM: ca.keyPEM)
        try issued.certificatePEM.write(toFile: "\(folder)/\(workload).pem", atomically: true, encoding: .utf8)
        try issued.keyPEM.write(toFile: "\(folder)/\(workload)-key.pem", atomically: true, encoding: .utf8)
    }
}

/// The certificate of `workload` from a folder made by `make-certs`.
func benchmarkTLS(_ folder: String, _ workload: String) throws -> RPCTLS {
    try RPCTLS(files: .init(ca: folder + "/ca.pem", certificate: "\(folder)/\(workload).pem", key: "\(folder)/\(workload)-key.pem"), trustDomain: "rekey")
}

/// Who may call the benchmark server over TLS: the gateway, Echo.
let benchmarkPolicy = CallerPolicy(["gateway": [Rekey_Testing_V1_Echo.Method.Echo.descriptor]])

/// New connections one after the other, each with one call: the cost of a connection (and of a
/// full TLS 1.3 handshake with client certificates, with `tls`).
func runHandshakes(port: Int, count: Int, tls: RPCTLS?) async throws {
    var logger = Logger(label: "rekey.bench.handshakes")
    logger.logLevel = .critical
    let request = makeRequest()
    var latencies: [Float] = []
    let started = ContinuousClock.now
    for _ in 0..<count {
        let start = ContinuousClock.now
        let client = RPCClient(
            configuration: .init(host: "127.0.0.1", port: port, credential: tls == nil ? credential : nil, caller: "bench", tls: tls, serverIdentity: tls == nil ? nil : "directory"),
            logger: logger
        )
        _ = try await Rekey_Testing_V1_Echo.Client(wrapping: client).echo(request)
        await client.close()
        let elapsed = ContinuousClock.now - start
        latencies.append(Float(elapsed.components.attoseconds) / 1e12 + Float(elapsed.components.seconds) * 1e6)
    }
    let total = ContinuousClock.now - started
    latencies.sort()
    let seconds = Double(total.components.seconds) + Double(total.components.attoseconds) / 1e18
    print("\(count) \(seconds) \(latencies[latencies.count / 2]) \(latencies[Int(Double(latencies.count) * 0.99)])")
}

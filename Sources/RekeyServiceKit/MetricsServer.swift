import CoreMetrics
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle

/// Prometheus metrics for one executable: `bootstrap()` makes swift-prometheus the process's
/// swift-metrics backend, and the server answers `GET /metrics` in the text exposition format on
/// its own port (`metrics_listen`), apart from the service's RPC or HTTP traffic.
///
/// Besides what the code records, each scrape refreshes `process_resident_memory_bytes`,
/// `process_cpu_seconds_total` and `process_open_fds` (from `/proc/self`), and runs the `beforeScrape`
/// hook, where a service sets gauges read from its database (the notifier's queue depth).
package final class MetricsServer: Service, Sendable {
    private let host: String
    private let port: Int
    private let registry: PrometheusCollectorRegistry
    private let beforeScrape: @Sendable () async -> Void
    private let logger: Logger
    private let bound: EventLoopPromise<SocketAddress>
    private let process: ProcessFigures
    /// The listening channel, once ``bind()`` made it.
    private let channel = NIOLockedValueBox<(any Channel)?>(nil)

    /// Installs swift-prometheus as the process-wide metrics backend. Call once, before any
    /// metric is made (the RPC server makes its own at start-up).
    package static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // RPC and page latencies are milliseconds to a second or two.
        factory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
        ]
        // Prometheus names allow letters, digits and underscores (Hummingbird's have dots).
        factory.nameAndLabelSanitizer = { name, labels in
            (Self.sanitize(name), labels.map { (Self.sanitize($0.0), $0.1) })
        }
        MetricsSystem.bootstrap(factory)
        return registry
    }

    /// Runs whenever a metric is looked up (the domain counters do that per event), so a name
    /// that is already valid, as ours are, is returned without copying.
    private static func sanitize(_ name: String) -> String {
        func valid(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) || byte == UInt8(ascii: "_")
        }
        if name.utf8.allSatisfy(valid) { return name }
        return String(decoding: name.utf8.map { valid($0) ? $0 : UInt8(ascii: "_") }, as: UTF8.self)
    }

    package init(
        listen: HostAndPort,
        registry: PrometheusCollectorRegistry,
        logger: Logger,
        beforeScrape: @escaping @Sendable () async -> Void = {}
    ) {
        self.host = listen.host
        self.port = listen.port
        self.registry = registry
        self.logger = logger
        self.beforeScrape = beforeScrape
        self.bound = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: SocketAddress.self)
        self.process = ProcessFigures(registry: registry)
    }

    deinit {
        self.bound.fail(CancellationError())
    }

    /// The address the server listens on, once it does.
    package var localAddress: SocketAddress {
        get async throws { try await self.bound.futureResult.get() }
    }

    /// Binds the port; executables call it before their main server starts, so that they
    /// announce "listening" only once every listener of theirs is bound (a taken metrics port
    /// stops the start, before anyone thinks the service is up). ``run()`` binds if nobody did.
    @discardableResult
    package func bind() async throws -> any Channel {
        if let channel = self.channel.withLockedValue({ $0 }) { return channel }
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(server: self))
                    }
                }
                .bind(host: self.host, port: self.port)
                .get()
        } catch {
            self.bound.fail(error)
            throw MetricsServerError(message: "cannot listen for metrics on \(self.host):\(self.port) (metrics_listen): \(error)")
        }
        let port = channel.localAddress?.port ?? self.port
        self.logger.info("metrics server listening", metadata: ["metrics.host": "\(self.host)", "metrics.port": "\(port)"])
        if let address = channel.localAddress { self.bound.succeed(address) }
        self.channel.withLockedValue { $0 = channel }
        return channel
    }

    package func run() async throws {
        let channel = try await self.bind()
        await withGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
    }

    /// The exposition text: the hook, the process figures, then every metric.
    fileprivate func scrape() async -> [UInt8] {
        await self.beforeScrape()
        self.process.refresh()
        return self.registry.emitToBuffer()
    }
}

package struct MetricsServerError: Error, CustomStringConvertible {
    package var message: String
    package var description: String { self.message }
}

/// Answers `GET /metrics` (and `HEAD`); anything else is 404 or 405.
private final class MetricsHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let server: MetricsServer
    private var request: HTTPRequestHead?

    init(server: MetricsServer) {
        self.server = server
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.request = head
        case .body:
            break
        case .end:
            guard let head = self.request else { return }
            self.request = nil
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            let channel = context.channel
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            guard path == "/metrics" else {
                self.respond(context: context, head: head, status: .notFound, body: Array("not found: metrics are at /metrics\n".utf8))
                return
            }
            guard head.method == .GET || head.method == .HEAD else {
                self.respond(context: context, head: head, status: .methodNotAllowed, body: Array("use GET\n".utf8))
                return
            }
            let server = self.server
            let promise = channel.eventLoop.makePromise(of: [UInt8].self)
            promise.completeWithTask { await server.scrape() }
            promise.futureResult.whenSuccess { body in
                let (handler, context) = loopBound.value
                handler.respond(context: context, head: head, status: .ok, body: head.method == .HEAD ? [] : body, length: body.count)
            }
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead, status: HTTPResponseStatus, body: [UInt8], length: Int? = nil) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(length ?? body.count)")
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if !body.isEmpty {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let keepAlive = head.isKeepAlive
        context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}

/// The process's memory, CPU time and open files, read from `/proc/self` at each scrape.
private struct ProcessFigures: Sendable {
    let residentMemory: Prometheus.Gauge
    let cpuSeconds: Prometheus.Gauge
    let openFiles: Prometheus.Gauge

    init(registry: PrometheusCollectorRegistry) {
        self.residentMemory = registry.makeGauge(name: "process_resident_memory_bytes", help: "Resident memory of the process")
        self.cpuSeconds = registry.makeGauge(name: "process_cpu_seconds_total", help: "User and system CPU time of the process")
        self.openFiles = registry.makeGauge(name: "process_open_fds", help: "Open file descriptors of the process")
    }

    func refresh() {
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = statm.split(separator: " ")
            if fields.count > 1, let pages = Double(fields[1]) { self.residentMemory.set(pages * pageSize) }
        }
        // Fields after the command name, which is in parentheses and may hold spaces.
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
           let end = stat.lastIndex(of: ")") {
            let fields = stat[stat.index(after: end)...].split(separator: " ")
            if fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) {
                self.cpuSeconds.set((user + system) / ticks)
            }
        }
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            self.openFiles.set(Double(entries.count))
        }
    }
}

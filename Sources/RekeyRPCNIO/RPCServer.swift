import CoreMetrics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import RekeyRPC
import ServiceLifecycle

/// A Rekey RPC server on TCP: the accept loop, one ``ServerConnectionHandler`` per connection,
/// and a graceful drain on shutdown.
///
/// Run it in a `ServiceGroup`: on SIGTERM it stops accepting, answers new calls UNAVAILABLE,
/// reports NOT_SERVING, lets in-flight calls finish, and closes what is left after
/// ``Configuration/drainTimeout``.
///
/// Metric: `rekey_rpc_server_connections` (open connections; the calls are the
/// `MetricsInterceptor`'s).
package final class RPCServer: Service {
    package struct Configuration: Sendable {
        package var host: String
        /// 0 picks a free port; read it back from ``RPCServer/localAddress``.
        package var port: Int
        /// The largest frame accepted; a larger length prefix closes that connection.
        package var maxFrameSize: Int
        /// Calls one connection may have running; more wait, and the socket is not read meanwhile.
        package var maxConcurrentCallsPerConnection: Int
        /// A connection with no traffic and no calls for this long is closed; so is one whose
        /// peer stops reading responses for this long.
        package var idleTimeout: Duration
        /// How long in-flight calls may take to finish on shutdown before connections are closed.
        package var drainTimeout: Duration
        /// Connections open at once; one more is closed as soon as it is accepted.
        package var maxConnections: Int
        /// Once a frame's first byte arrives, the whole frame must follow within this, or the
        /// connection is closed. The TLS handshake must finish within it too.
        package var frameTimeout: Duration
        /// Mutual TLS; nil serves plaintext.
        package var tls: RPCTLS?
        /// Failed TLS handshakes are logged once per peer address in this interval.
        package var handshakeLogInterval: Duration = .seconds(10)

        package init(
            host: String = "127.0.0.1",
            port: Int = 0,
            maxFrameSize: Int = 1 << 20,
            maxConcurrentCallsPerConnection: Int = 256,
            idleTimeout: Duration = .seconds(300),
            drainTimeout: Duration = .seconds(10),
            maxConnections: Int = 4096,
            frameTimeout: Duration = .seconds(10),
            tls: RPCTLS? = nil
        ) {
            self.host = host
            self.port = port
            self.maxFrameSize = maxFrameSize
            self.maxConcurrentCallsPerConnection = maxConcurrentCallsPerConnection
            self.idleTimeout = idleTimeout
            self.drainTimeout = drainTimeout
            self.maxConnections = maxConnections
            self.frameTimeout = frameTimeout
            self.tls = tls
        }

        package static let defaults = Configuration()
    }

    private let configuration: Configuration
    private let dispatcher: RPCDispatcher
    private let health: HealthService?
    private let group: any EventLoopGroup
    private let logger: Logger
    private let bound: EventLoopPromise<SocketAddress>
    private let state = NIOLockedValueBox(State())
    private let connectionsGauge = Meter(label: "rekey_rpc_server_connections")
    private let connectionsRefused = Counter(label: "rekey_rpc_server_connections_refused_total")
    /// One log line per interval about refused connections, with the count.
    private let refusalLog = RefusalLogLimiter(interval: .seconds(10), capacity: 1)
    /// One log line per peer address and interval about failed TLS handshakes.
    private let handshakeRefusals: RefusalLogLimiter

    private struct State {
        var serverChannel: (any Channel)?
        var connections: [ObjectIdentifier: any Channel] = [:]
        var shuttingDown = false
        var boundCompleted = false
    }

    /// - Parameters:
    ///   - services: what to serve; `health` is served as well when given.
    ///   - interceptors: run around every call, the first outermost.
    ///   - health: marked NOT_SERVING once every connection refuses new calls.
    package init(
        configuration: Configuration,
        services: [any RPCService],
        interceptors: [any ServerInterceptor] = [],
        health: HealthService? = nil,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        self.configuration = configuration
        self.health = health
        self.group = eventLoopGroup
        self.logger = logger
        self.dispatcher = RPCDispatcher(
            services: services + (health.map { [$0] } ?? []),
            interceptors: interceptors,
            logger: logger
        )
        self.bound = eventLoopGroup.any().makePromise(of: SocketAddress.self)
        self.handshakeRefusals = RefusalLogLimiter(interval: configuration.handshakeLogInterval)
    }

    deinit {
        if !self.state.withLockedValue(\.boundCompleted) {
            self.bound.fail(CancellationError())
        }
    }

    /// The address the server listens on, once it does.
    package var localAddress: SocketAddress {
        get async throws {
            try await self.bound.futureResult.get()
        }
    }

    package func run() async throws {
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: self.group)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(AdmissionHandler { [self] child in self.admit(child) })
                    }
                }
                .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .childChannelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try self.setUpConnection(channel)
                    }
                }
                .bind(host: self.configuration.host, port: self.configuration.port)
                .get()
        } catch {
            self.state.withLockedValue { $0.boundCompleted = true }
            self.bound.fail(error)
            throw error
        }
        let address = channel.localAddress!
        let alreadyShuttingDown = self.state.withLockedValue { state in
            state.serverChannel = channel
            state.boundCompleted = true
            return state.shuttingDown
        }
        self.bound.succeed(address)
        self.logger.info("rpc server listening", metadata: ["rpc.address": "\(address)", "rpc.port": "\(address.port ?? 0)"])
        if alreadyShuttingDown {
            channel.close(promise: nil)
        }

        try? await withTaskCancellationOrGracefulShutdownHandler {
            try await channel.closeFuture.get()
        } onCancelOrGracefulShutdown: {
            self.beginShutdown()
        }
        self.beginShutdown()
        await self.drainConnections()
        self.logger.info("rpc server stopped")
    }

    /// Starts the drain that SIGTERM would start: for tests and embedding without a ServiceGroup.
    package func beginShutdown() {
        let channel: (any Channel)? = self.state.withLockedValue { state in
            guard !state.shuttingDown else { return nil }
            state.shuttingDown = true
            return state.serverChannel
        }
        channel?.close(promise: nil)
    }

    /// Whether to take a connection the server channel just accepted: on the server channel's
    /// event loop, in the order the kernel accepted them (``AdmissionHandler``).
    private func admit(_ channel: any Channel) -> Bool {
        enum Admission { case accepted, shuttingDown, full }
        let admission = self.state.withLockedValue { state -> Admission in
            guard !state.shuttingDown else { return .shuttingDown }
            guard state.connections.count < self.configuration.maxConnections else { return .full }
            state.connections[ObjectIdentifier(channel)] = channel
            return .accepted
        }
        switch admission {
        case .accepted:
            self.connectionsGauge.increment()
            channel.closeFuture.whenComplete { [state = self.state, gauge = self.connectionsGauge] _ in
                state.withLockedValue { _ = $0.connections.removeValue(forKey: ObjectIdentifier(channel)) }
                gauge.decrement()
            }
            return true
        case .shuttingDown:
            return false
        case .full:
            self.connectionsRefused.increment()
            let (log, suppressed) = self.refusalLog.admit(peer: "max_connections")
            if log {
                self.logger.warning(
                    "refusing a connection: max_connections are open",
                    metadata: ["rpc.max_connections": "\(self.configuration.maxConnections)", "rpc.refused_not_logged": "\(suppressed)"]
                )
            }
            return false
        }
    }

    /// The pipeline of an admitted connection: on its own event loop.
    private func setUpConnection(_ channel: any Channel) throws {
        // Admitted, but the drain may have begun before its pipeline was here to learn of it:
        // then it has had no call, and closing it is all the drain would do.
        guard !self.state.withLockedValue(\.shuttingDown) else {
            channel.close(promise: nil)
            return
        }
        let idle = self.configuration.idleTimeout.timeAmount
        var identity: PeerIdentityHandler?
        if let tls = self.configuration.tls {
            let peer = channel.remoteAddress?.description ?? "unknown"
            let handler = PeerIdentityHandler(
                trustDomain: tls.trustDomain, expected: nil, eventLoop: channel.eventLoop, handshakeTimeout: self.configuration.frameTimeout
            ) { [logger = self.logger, limiter = self.handshakeRefusals] why in
                Counter(label: "rekey_rpc_server_tls_handshake_failures_total").increment()
                let (log, suppressed) = limiter.admit(peer: peer)
                guard log else { return }
                var metadata: Logger.Metadata = ["rpc.peer": "\(peer)", "reason": "\(why)"]
                if suppressed > 0 { metadata["rpc.refusals_not_logged"] = "\(suppressed)" }
                logger.warning("refused a connection: the TLS handshake failed", metadata: metadata)
            }
            try channel.pipeline.syncOperations.addHandlers(NIOSSLServerHandler(context: tls.serverContext), handler)
            identity = handler
        }
        try channel.pipeline.syncOperations.addHandlers(
            IdleStateHandler(allTimeout: idle),
            FrameDeadlineHandler(timeout: self.configuration.frameTimeout.timeAmount, logger: self.logger),
            ByteToMessageHandler(FrameDecoder(maxFrameSize: self.configuration.maxFrameSize)),
            ServerConnectionHandler(dispatcher: self.dispatcher, configuration: self.configuration, identity: identity, logger: self.logger)
        )
    }

    private func drainConnections() async {
        // No connection is accepted any more (`shuttingDown`), so this is every connection there is.
        let connections = self.state.withLockedValue { Array($0.connections.values) }
        // Wait until every connection refuses new calls, then report NOT_SERVING: whoever sees
        // NOT_SERVING can count on new calls being refused.
        let told = connections.map { connection in
            connection.eventLoop.submit {
                try connection.pipeline.syncOperations.fireUserInboundEventTriggered(DrainConnectionEvent())
            }
        }
        for future in told {
            try? await future.get()
        }
        self.health?.markAllNotServing()
        guard !connections.isEmpty else { return }
        self.logger.info("draining connections", metadata: ["rpc.connections": "\(connections.count)"])
        let eventLoop = self.group.any()
        let forceClose = eventLoop.scheduleTask(in: self.configuration.drainTimeout.timeAmount) { [logger] in
            logger.warning("drain timeout passed; closing connections with calls still running")
            for connection in connections {
                connection.close(promise: nil)
            }
        }
        try? await EventLoopFuture.andAllComplete(connections.map(\.closeFuture), on: eventLoop).get()
        forceClose.cancel()
    }
}

/// First on the server channel's pipeline, before the bootstrap's own accept handler: each
/// connection the kernel accepted is admitted (counted against `max_connections`) or closed here,
/// in the order it was accepted. Admitted in its initializer instead, which runs on the
/// connection's own event loop, a connection on an idle loop could be counted before earlier ones
/// on a busy loop, and the limit then closed an older connection instead of the newest.
private final class AdmissionHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private let admit: @Sendable (any Channel) -> Bool

    init(admit: @escaping @Sendable (any Channel) -> Bool) {
        self.admit = admit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let connection = Self.unwrapInboundIn(data)
        if self.admit(connection) {
            context.fireChannelRead(data)
        } else {
            // Not registered yet: closing it is what the bootstrap does with one it cannot set up.
            connection.close(promise: nil)
        }
    }
}

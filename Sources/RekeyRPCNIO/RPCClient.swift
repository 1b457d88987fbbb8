import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import RekeyRPC
import Synchronization

/// A client for one Rekey RPC server: one multiplexed TCP connection, made on first use and
/// remade after it is lost.
///
/// Many calls share the connection; each is matched to its answer by call id. While the peer
/// cannot be reached, calls fail at once with UNAVAILABLE and reconnection is tried again after an
/// exponential back-off. Every call's deadline is enforced, connecting included.
package final class RPCClient: ClientTransport {
    package struct Configuration: Sendable {
        /// The peer's host (name or address) and port.
        package var host: String
        package var port: Int
        /// Sent as `authorization: Bearer <credential>` on every call.
        package var credential: String?
        /// This service's name, sent as `caller` for the peer's logs.
        package var caller: String
        /// The largest frame sent or accepted.
        package var maxFrameSize: Int
        package var connectTimeout: Duration
        /// The first wait after a failed connection attempt; doubled each time up to `maxBackoff`.
        package var initialBackoff: Duration
        package var maxBackoff: Duration
        /// Mutual TLS: our certificate, and the CA the server's must chain to; nil is plaintext.
        package var tls: RPCTLS?
        /// With TLS, the workload the server's certificate must name (`directory`, …): a server
        /// with another certificate from the same CA is refused. Nil accepts any workload.
        package var serverIdentity: String?

        package init(
            host: String,
            port: Int,
            credential: String? = nil,
            caller: String = "",
            maxFrameSize: Int = 1 << 20,
            connectTimeout: Duration = .seconds(5),
            initialBackoff: Duration = .milliseconds(100),
            maxBackoff: Duration = .seconds(5),
            tls: RPCTLS? = nil,
            serverIdentity: String? = nil
        ) {
            self.host = host
            self.port = port
            self.credential = credential
            self.caller = caller
            self.maxFrameSize = maxFrameSize
            self.connectTimeout = connectTimeout
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
            self.tls = tls
            self.serverIdentity = serverIdentity
        }
    }

    private enum State {
        case idle(failures: Int)
        case connecting(EventLoopFuture<any Channel>, failures: Int)
        /// The connection, and an executor on its event loop for the calls made on it.
        case ready(any Channel, EventLoopTaskExecutor)
        case backingOff(until: ContinuousClock.Instant, failures: Int, reason: String)
        case closed
    }

    private let configuration: Configuration
    private let group: any EventLoopGroup
    private let logger: Logger
    private let state = NIOLockedValueBox(State.idle(failures: 0))
    private let nextCallID = Atomic<UInt64>(1)
    private let target: String
    private let fixedMetadata: [Rekey_Rpc_V1_MetadataEntry]

    package init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        self.configuration = configuration
        self.group = eventLoopGroup
        self.target = "\(configuration.host):\(configuration.port)"
        var logger = logger
        logger[metadataKey: "rpc.target"] = "\(self.target)"
        self.logger = logger
        var fixed: [Rekey_Rpc_V1_MetadataEntry] = []
        if let credential = configuration.credential {
            fixed.append(.init(key: MetadataKey.authorization, value: "Bearer \(credential)"))
        }
        if !configuration.caller.isEmpty {
            fixed.append(.init(key: MetadataKey.caller, value: configuration.caller))
        }
        self.fixedMetadata = fixed
    }

    package func unary(
        method: MethodDescriptor,
        payload: [UInt8],
        metadata: Metadata,
        deadline: ContinuousClock.Instant?
    ) async throws -> [UInt8] {
        let (channel, executor) = try await self.channel(deadline: deadline)
        var request = Rekey_Rpc_V1_Request()
        let callID = self.nextCallID.wrappingAdd(1, ordering: .relaxed).oldValue
        request.callID = callID
        request.method = method.fullyQualifiedMethod
        request.payload = payload
        request.metadata = self.fixedMetadata
        for entry in metadata where entry.key != MetadataKey.authorization && entry.key != MetadataKey.caller {
            request.metadata.append(.init(key: entry.key, value: entry.value))
        }
        let pending = PendingCall()
        // The caller waits on the connection's event loop: the answer is read there and the caller
        // resumed there, and its next call is written there, without a thread switch per call.
        return try await withTaskExecutorPreference(executor) {
            try await self.send(request, callID: callID, deadline: deadline, pending: pending, on: channel)
        }
    }

    private func send(
        _ request: Rekey_Rpc_V1_Request,
        callID: UInt64,
        deadline: ContinuousClock.Instant?,
        pending: PendingCall,
        on channel: any Channel
    ) async throws -> [UInt8] {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                pending.attach(continuation)
                let call = OutboundCall(callID: callID, request: request, deadline: deadline, pending: pending)
                channel.writeAndFlush(call).whenFailure { [target] error in
                    // Reaches here only when the channel closed before our handler saw the call.
                    pending.complete(.failure(RPCError(.unavailable, "could not send to \(target): \(error)", notStarted: true)))
                }
            }
        } onCancel: {
            pending.complete(.failure(RPCError(.cancelled, "the call was cancelled by the caller")))
            channel.triggerUserOutboundEvent(ForgetCallEvent(callID: callID), promise: nil)
        }
    }

    /// Closes the connection; calls in flight fail with UNAVAILABLE, later calls too.
    package func close() async {
        let channel: (any Channel)? = self.state.withLockedValue { state in
            defer { state = .closed }
            if case .ready(let channel, _) = state { return channel }
            return nil
        }
        try? await channel?.close()
    }

    // MARK: Connection management

    private enum Next {
        case use(any Channel, EventLoopTaskExecutor)
        case wait(EventLoopFuture<any Channel>)
        case connect(failures: Int)
        case fail(RPCError)
    }

    private func channel(deadline: ContinuousClock.Instant?) async throws -> (any Channel, EventLoopTaskExecutor) {
        let next: Next = self.state.withLockedValue { state in
            switch state {
            case .ready(let channel, let executor):
                return .use(channel, executor)
            case .connecting(let future, _):
                return .wait(future)
            case .idle(let failures):
                return .connect(failures: failures)
            case .backingOff(let until, let failures, let reason):
                if ContinuousClock.now < until {
                    return .fail(RPCError(.unavailable, "\(self.target) is unavailable: \(reason)", notStarted: true))
                }
                return .connect(failures: failures)
            case .closed:
                return .fail(RPCError(.unavailable, "the client for \(self.target) is closed", notStarted: true))
            }
        }
        switch next {
        case .use(let channel, let executor):
            return (channel, executor)
        case .fail(let error):
            throw error
        case .wait(let future):
            let channel = try await self.await(future, deadline: deadline)
            return (channel, EventLoopTaskExecutor(eventLoop: channel.eventLoop))
        case .connect(let failures):
            let channel = try await self.await(self.connect(failures: failures), deadline: deadline)
            return (channel, EventLoopTaskExecutor(eventLoop: channel.eventLoop))
        }
    }

    private func connect(failures: Int) -> EventLoopFuture<any Channel> {
        let promise = self.group.any().makePromise(of: (any Channel).self)
        // Only one caller starts a connection; others that raced here wait for it.
        let winner: EventLoopFuture<any Channel> = self.state.withLockedValue { state in
            switch state {
            case .connecting(let existing, _):
                return existing
            case .ready(let channel, _):
                return channel.eventLoop.makeSucceededFuture(channel)
            case .closed:
                return promise.futureResult.eventLoop.makeFailedFuture(RPCError(.unavailable, "the client for \(self.target) is closed", notStarted: true))
            case .idle, .backingOff:
                state = .connecting(promise.futureResult, failures: failures)
                return promise.futureResult
            }
        }
        guard winner === promise.futureResult else {
            promise.fail(CancellationError())
            return winner
        }
        let configuration = self.configuration
        let logger = self.logger
        ClientBootstrap(group: self.group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(configuration.connectTimeout.timeAmount)
            .channelInitializer { [target] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls = configuration.tls {
                        let identity = PeerIdentityHandler(
                            trustDomain: tls.trustDomain, expected: configuration.serverIdentity, eventLoop: channel.eventLoop,
                            handshakeTimeout: configuration.connectTimeout, onFailure: { _ in }
                        )
                        try channel.pipeline.syncOperations.addHandlers(try NIOSSLClientHandler(context: tls.clientContext, serverHostname: nil), identity)
                    }
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(FrameDecoder(maxFrameSize: configuration.maxFrameSize)),
                        ClientConnectionHandler(target: target, maxFrameSize: configuration.maxFrameSize, logger: logger)
                    )
                }
            }
            .connect(host: configuration.host, port: configuration.port)
            .flatMap { channel in
                // With TLS, the connection is ready once the server proved who it is.
                guard configuration.tls != nil, let identity = try? channel.pipeline.syncOperations.handler(type: PeerIdentityHandler.self) else {
                    return channel.eventLoop.makeSucceededFuture(channel)
                }
                return identity.verified.futureResult.map { _ in channel }.flatMapErrorThrowing { error in
                    channel.close(promise: nil)
                    throw error
                }
            }
            .whenComplete { result in
                self.connectionAttemptFinished(result, failures: failures, promise: promise)
            }
        return promise.futureResult
    }

    private func connectionAttemptFinished(
        _ result: Result<any Channel, any Error>,
        failures: Int,
        promise: EventLoopPromise<any Channel>
    ) {
        switch result {
        case .success(let channel):
            let keep = self.state.withLockedValue { state -> Bool in
                guard case .closed = state else {
                    state = .ready(channel, EventLoopTaskExecutor(eventLoop: channel.eventLoop))
                    return true
                }
                return false
            }
            guard keep else {
                channel.close(promise: nil)
                promise.fail(RPCError(.unavailable, "the client for \(self.target) is closed", notStarted: true))
                return
            }
            self.logger.debug("connected")
            channel.closeFuture.whenComplete { _ in
                self.state.withLockedValue { state in
                    if case .ready(let current, _) = state, current === channel {
                        state = .idle(failures: 0)
                    }
                }
            }
            promise.succeed(channel)
        case .failure(let error):
            let backoff = self.backoff(afterFailures: failures + 1)
            let reason = "cannot connect (\(error))"
            self.state.withLockedValue { state in
                if case .closed = state { return }
                state = .backingOff(until: .now + backoff, failures: failures + 1, reason: reason)
            }
            self.logger.warning("connection attempt failed", metadata: ["error": "\(error)", "rpc.retry_in_ms": "\(backoff.microseconds / 1000)"])
            promise.fail(RPCError(.unavailable, "\(self.target) is unavailable: \(reason)", notStarted: true))
        }
    }

    private func backoff(afterFailures failures: Int) -> Duration {
        let exponent = min(failures - 1, 20)
        let base = self.configuration.initialBackoff * (1 << exponent)
        let capped = min(base, self.configuration.maxBackoff)
        // Up to 20% jitter so that many clients do not retry in step.
        return capped * Double.random(in: 0.8...1.0)
    }

    /// Waits for `future`, but no later than `deadline`.
    private func await(_ future: EventLoopFuture<any Channel>, deadline: ContinuousClock.Instant?) async throws -> any Channel {
        guard let deadline else {
            return try await Self.mapConnectError(future.get)
        }
        let eventLoop = future.eventLoop
        let result = eventLoop.makePromise(of: (any Channel).self)
        // Both callbacks run on `eventLoop`, one after the other; the first one to run wins.
        let completed = NIOLockedValueBox(false)
        let timer = eventLoop.scheduleTask(in: (deadline - .now).timeAmount) { [target] in
            guard completed.withLockedValue({ done in defer { done = true }; return !done }) else { return }
            result.fail(RPCError(.deadlineExceeded, "could not connect to \(target) before the deadline"))
        }
        future.hop(to: eventLoop).whenComplete { outcome in
            timer.cancel()
            guard completed.withLockedValue({ done in defer { done = true }; return !done }) else { return }
            result.completeWith(outcome)
        }
        return try await Self.mapConnectError(result.futureResult.get)
    }

    private static func mapConnectError(_ body: () async throws -> any Channel) async throws -> any Channel {
        do {
            return try await body()
        } catch let error as RPCError {
            throw error
        } catch {
            throw RPCError(.unavailable, "cannot connect: \(error)", notStarted: true)
        }
    }
}

extension Rekey_Rpc_V1_MetadataEntry {
    init(key: String, value: String) {
        self.init()
        self.key = key
        self.value = value
    }
}

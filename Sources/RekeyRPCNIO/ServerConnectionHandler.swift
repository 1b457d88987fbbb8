import Logging
import NIOCore
import RekeyProtobuf
import RekeyRPC

/// Asks a server connection to finish its in-flight calls, refuse new ones, and close.
struct DrainConnectionEvent {}

/// Serves the calls of one connection: decodes request envelopes, runs each call as a task on this
/// connection's event loop, enforces deadlines, and writes the responses in whatever order they
/// finish.
///
/// Backpressure: at most `maxConcurrentCalls` handlers run at once; while that many are running,
/// or while the peer is not reading our responses, the handler stops reading from the socket.
final class ServerConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Call {
        var requestID: String
        var task: Task<Void, Never>?
        var timer: Scheduled<Void>?
    }

    private struct QueuedCall {
        var callID: UInt64
        var call: IncomingCall
    }

    private let dispatcher: RPCDispatcher
    private let configuration: RPCServer.Configuration
    private var logger: Logger
    private var executor: EventLoopTaskExecutor?
    private var context: ChannelHandlerContext?
    private var peer = "unknown"
    /// With mutual TLS: the peer's workload, known once the handshake is done (before any frame).
    private let identity: PeerIdentityHandler?

    private var calls: [UInt64: Call] = [:]
    /// Calls decoded while `maxConcurrentCalls` were running; bounded by what one read delivers.
    private var queued: [QueuedCall] = []
    private var draining = false
    /// Closes a drained connection after a quiet moment; see ``closeIfDrained(context:)``.
    private var drainedClose: Scheduled<Void>?
    private var readPending = false
    private var stallTimer: Scheduled<Void>?
    private var flushPending = false

    init(dispatcher: RPCDispatcher, configuration: RPCServer.Configuration, identity: PeerIdentityHandler? = nil, logger: Logger) {
        self.dispatcher = dispatcher
        self.configuration = configuration
        self.identity = identity
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.executor = EventLoopTaskExecutor(eventLoop: context.eventLoop)
        self.peer = context.channel.remoteAddress?.description ?? "unknown"
        self.logger[metadataKey: "rpc.peer"] = "\(self.peer)"
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        let request: Rekey_Rpc_V1_Request
        do {
            request = try frame.withUnsafeReadableBytes { try Rekey_Rpc_V1_Request(serializedBytes: $0) }
        } catch {
            self.closeForProtocolViolation(context: context, "a frame is not a valid rekey.rpc.v1.Request")
            return
        }
        guard request.callID != 0 else {
            self.closeForProtocolViolation(context: context, "a request has call id 0")
            return
        }
        guard self.calls[request.callID] == nil, !self.queued.contains(where: { $0.callID == request.callID }) else {
            self.closeForProtocolViolation(context: context, "call id \(request.callID) is already in flight")
            return
        }
        if self.draining {
            // Health keeps answering on a connection still open, with the truth: NOT_SERVING.
            if request.method == Self.healthCheck, let payload = try? Self.notServing.serializedBytes() {
                self.respond(callID: request.callID, outcome: .success(ServerResponse(payload: payload, trailers: [:])))
                self.closeIfDrained(context: context)
                return
            }
            self.respond(callID: request.callID, outcome: .failure(RPCError(.unavailable, "the server is shutting down", trailers: [MetadataKey.notStarted: "1"])))
            return
        }
        var metadata = Metadata()
        for entry in request.metadata {
            metadata.add(entry.key, entry.value)
        }
        let deadline: ContinuousClock.Instant? =
            request.timeoutMicros == 0 ? nil : .now + .microseconds(Int64(clamping: request.timeoutMicros))
        let call = IncomingCall(
            method: request.method,
            metadata: metadata,
            payload: request.payload,
            deadline: deadline,
            peer: self.peer,
            peerIdentity: self.identity?.workload
        )
        if self.calls.count < self.configuration.maxConcurrentCallsPerConnection {
            self.start(callID: request.callID, call: call)
        } else {
            self.queued.append(QueuedCall(callID: request.callID, call: call))
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.stallTimer?.cancel()
            self.stallTimer = nil
            self.resumeReadingIfPossible(context: context)
        } else if self.stallTimer == nil {
            // A peer that sends requests but never reads the answers must not pin the connection.
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            self.stallTimer = context.eventLoop.scheduleTask(in: self.configuration.idleTimeout.timeAmount) {
                loopBound.value.closeStalled()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case is DrainConnectionEvent:
            self.draining = true
            self.closeIfDrained(context: context)
        case let event as IdleStateHandler.IdleStateEvent where event == .all:
            // A connection that is quiet because its peer stopped reading is the stall timer's.
            if self.calls.isEmpty && self.queued.isEmpty && context.channel.isWritable {
                self.logger.info("closing an idle connection")
                context.close(promise: nil)
            }
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.drainedClose?.cancel()
        for call in self.calls.values {
            call.task?.cancel()
            call.timer?.cancel()
        }
        self.calls.removeAll()
        self.queued.removeAll()
        self.stallTimer?.cancel()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? FrameError {
            self.closeForProtocolViolation(context: context, error.description)
        } else {
            self.logger.info("closing connection after an error", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        if self.canAcceptMoreCalls(context: context) {
            context.read()
        } else {
            self.readPending = true
        }
    }

    // MARK: Calls

    private func start(callID: UInt64, call: IncomingCall) {
        guard let context = self.context, let executor = self.executor else { return }
        let callContext = self.dispatcher.makeContext(for: call)
        if let deadline = call.deadline, deadline <= .now {
            self.respond(callID: callID, outcome: .failure(RPCError(.deadlineExceeded, "the deadline passed before the call started")))
            return
        }
        let eventLoop = context.eventLoop
        let loopBound = NIOLoopBound(self, eventLoop: eventLoop)
        // Registered before the task starts so that a handler finishing at once finds its entry.
        self.calls[callID] = Call(requestID: callContext.requestID)
        let dispatcher = self.dispatcher
        // `immediate`: the handler starts on this thread, now, and runs until it first suspends; a
        // handler that never does is answered before `channelRead` returns.
        let task = Task.immediate(executorPreference: executor) {
            let outcome = await dispatcher.handle(call, context: callContext)
            if eventLoop.inEventLoop {
                loopBound.value.finish(callID: callID, outcome: outcome)
            } else {
                eventLoop.execute { loopBound.value.finish(callID: callID, outcome: outcome) }
            }
        }
        var timer: Scheduled<Void>?
        if let deadline = call.deadline {
            timer = eventLoop.scheduleTask(in: (deadline - .now).timeAmount) {
                loopBound.value.expire(callID: callID)
            }
        }
        if self.calls[callID] != nil {
            self.calls[callID] = Call(requestID: callContext.requestID, task: task, timer: timer)
        } else {
            timer?.cancel()
        }
    }

    private func finish(callID: UInt64, outcome: CallOutcome) {
        guard let call = self.calls.removeValue(forKey: callID) else {
            return  // The deadline passed first and the caller has its answer already.
        }
        call.timer?.cancel()
        self.respond(callID: callID, outcome: outcome)
        self.slotFreed()
    }

    private func expire(callID: UInt64) {
        guard let call = self.calls.removeValue(forKey: callID) else { return }
        call.task?.cancel()
        self.logger.info("a call passed its deadline", metadata: ["rpc.call_id": "\(callID)", "request.id": "\(call.requestID)"])
        self.respond(callID: callID, outcome: .failure(RPCError(.deadlineExceeded, "the deadline passed before the server finished")))
        self.slotFreed()
    }

    private func slotFreed() {
        guard let context = self.context else { return }
        while self.calls.count < self.configuration.maxConcurrentCallsPerConnection, !self.queued.isEmpty {
            let next = self.queued.removeFirst()
            if self.draining {
                self.respond(callID: next.callID, outcome: .failure(RPCError(.unavailable, "the server is shutting down", trailers: [MetadataKey.notStarted: "1"])))
            } else {
                self.start(callID: next.callID, call: next.call)
            }
        }
        self.closeIfDrained(context: context)
        self.resumeReadingIfPossible(context: context)
    }

    private func respond(callID: UInt64, outcome: CallOutcome) {
        guard let context = self.context else { return }
        var response = Rekey_Rpc_V1_Response()
        response.callID = callID
        var status = Rekey_Rpc_V1_Status()
        status.code = Rekey_Rpc_V1_StatusCode(rawValue: outcome.code.rawValue)
        status.message = outcome.message
        response.status = status
        response.payload = outcome.payload
        response.trailers = outcome.trailers.map { entry in
            var wire = Rekey_Rpc_V1_MetadataEntry()
            wire.key = entry.key
            wire.value = entry.value
            return wire
        }
        var buffer = context.channel.allocator.buffer(capacity: 64 + outcome.payload.count)
        do {
            try buffer.writeFrame(of: response, maxFrameSize: self.configuration.maxFrameSize)
        } catch {
            // The handler's reply is too large, or its error message holds a NUL: say so instead.
            self.logger.error("a response could not be encoded", metadata: ["error": "\(error)", "rpc.call_id": "\(callID)"])
            var fallback = Rekey_Rpc_V1_Response()
            fallback.callID = callID
            var fallbackStatus = Rekey_Rpc_V1_Status()
            fallbackStatus.code = error is FrameSizeExceeded ? .resourceExhausted : .internal
            fallbackStatus.message = error is FrameSizeExceeded ? "the response is larger than the frame limit" : "internal error"
            fallback.status = fallbackStatus
            buffer.clear()
            try! buffer.writeFrame(of: fallback, maxFrameSize: .max)
        }
        context.write(Self.wrapOutboundOut(buffer), promise: nil)
        self.scheduleFlush(context: context)
    }

    /// Flushes once after the tasks queued on the event loop have run, so that answers finishing
    /// together leave in one system call.
    private func scheduleFlush(context: ChannelHandlerContext) {
        guard !self.flushPending else { return }
        self.flushPending = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let handler = loopBound.value
            handler.flushPending = false
            handler.context?.flush()
        }
    }

    // MARK: Flow control and closing

    private func canAcceptMoreCalls(context: ChannelHandlerContext) -> Bool {
        self.calls.count < self.configuration.maxConcurrentCallsPerConnection
            && self.queued.isEmpty
            && context.channel.isWritable
    }

    private func resumeReadingIfPossible(context: ChannelHandlerContext) {
        if self.readPending, self.canAcceptMoreCalls(context: context) {
            self.readPending = false
            context.read()
        }
    }

    private static let healthCheck = Rekey_Health_V1_Health.Method.Check.descriptor.fullyQualifiedMethod
    private static let notServing: Rekey_Health_V1_HealthCheckResponse = {
        var response = Rekey_Health_V1_HealthCheckResponse()
        response.status = .notServing
        return response
    }()

    /// Once drained, the connection closes after a short quiet moment rather than at once: a
    /// request the peer sent before it read our "shutting down" would otherwise meet a closed
    /// socket and be lost without an answer, where now it gets the same not-started refusal. A
    /// Rekey client stops sending and closes its side as soon as it reads one; the server's drain
    /// timeout bounds any other.
    private func closeIfDrained(context: ChannelHandlerContext) {
        guard self.draining, self.calls.isEmpty, self.queued.isEmpty else { return }
        // Answers written but not yet flushed must leave before the connection closes.
        context.flush()
        self.drainedClose?.cancel()
        self.drainedClose = context.eventLoop.scheduleTask(in: Self.drainedQuietTime) {
            context.close(promise: nil)
        }
    }

    static let drainedQuietTime = TimeAmount.milliseconds(200)

    private func closeStalled() {
        guard let context = self.context, !context.channel.isWritable else { return }
        self.logger.warning("closing a connection whose peer has not read its responses")
        context.close(promise: nil)
    }

    private func closeForProtocolViolation(context: ChannelHandlerContext, _ reason: String) {
        self.logger.warning("closing connection: \(reason)")
        context.close(promise: nil)
    }
}

extension Duration {
    /// The duration as NIO's `TimeAmount`, at least zero.
    var timeAmount: TimeAmount {
        let (seconds, attoseconds) = self.components
        let nanos = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !nanos.overflow else { return .nanoseconds(.max) }
        return .nanoseconds(max(0, nanos.partialValue + attoseconds / 1_000_000_000))
    }
}

import Logging
import NIOConcurrencyHelpers
import NIOCore
import RekeyProtobuf
import RekeyRPC

/// The waiting side of one call: resumed exactly once, by whichever of the response, the
/// deadline, a cancellation or a lost connection comes first, even if that happens before the
/// caller's continuation is attached.
final class PendingCall: Sendable {
    private enum State {
        case waiting
        case attached(CheckedContinuation<[UInt8], any Error>)
        case finished(Result<[UInt8], RPCError>?)
    }

    private let state = NIOLockedValueBox(State.waiting)

    init() {}

    func attach(_ continuation: CheckedContinuation<[UInt8], any Error>) {
        let early: Result<[UInt8], RPCError>? = self.state.withLockedValue { state in
            switch state {
            case .waiting:
                state = .attached(continuation)
                return nil
            case .finished(let result):
                state = .finished(nil)
                return result
            case .attached:
                preconditionFailure("a call's continuation was attached twice")
            }
        }
        if let early {
            continuation.resume(with: early.mapError { $0 as any Error })
        }
    }

    func complete(_ result: Result<[UInt8], RPCError>) {
        let continuation: CheckedContinuation<[UInt8], any Error>? = self.state.withLockedValue { state in
            switch state {
            case .waiting:
                state = .finished(result)
                return nil
            case .attached(let continuation):
                state = .finished(nil)
                return continuation
            case .finished:
                return nil
            }
        }
        continuation?.resume(with: result.mapError { $0 as any Error })
    }
}

/// A call on its way to the client handler.
struct OutboundCall {
    var callID: UInt64
    var request: Rekey_Rpc_V1_Request
    var deadline: ContinuousClock.Instant?
    var pending: PendingCall
}

/// Forgets a call whose caller stopped waiting (its task was cancelled).
struct ForgetCallEvent {
    var callID: UInt64
}

/// The client side of one connection: sends request envelopes, matches responses to waiting
/// callers by call id, and enforces each call's deadline with a timer on the event loop.
final class ClientConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = OutboundCall
    typealias OutboundOut = ByteBuffer

    private struct Waiting {
        var pending: PendingCall
        var timer: Scheduled<Void>?
    }

    private var waiting: [UInt64: Waiting] = [:]
    /// The server said it is shutting down (a not-started refusal): nothing more is sent on this
    /// connection but health checks, and it closes once the calls already sent have their answers.
    private var goingAway = false
    private static let healthCheck = Rekey_Health_V1_Health.Method.Check.descriptor.fullyQualifiedMethod
    private let target: String
    private let maxFrameSize: Int
    private let logger: Logger

    init(target: String, maxFrameSize: Int, logger: Logger) {
        self.target = target
        self.maxFrameSize = maxFrameSize
        self.logger = logger
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var call = Self.unwrapOutboundIn(data)
        // Health checks still go: a draining server answers them, with NOT_SERVING.
        guard !self.goingAway || call.request.method == Self.healthCheck else {
            call.pending.complete(.failure(RPCError(.unavailable, "\(self.target) is shutting down", notStarted: true)))
            promise?.succeed()
            return
        }
        if let deadline = call.deadline {
            let remaining = deadline - .now
            guard remaining > .zero else {
                call.pending.complete(.failure(RPCError(.deadlineExceeded, "the deadline passed before the call was sent")))
                promise?.succeed()
                return
            }
            // Send the time left, rounded up so a server never sees 0 ("no deadline").
            call.request.timeoutMicros = max(1, UInt64(remaining.microseconds))
        }
        var buffer = context.channel.allocator.buffer(capacity: 64 + call.request.payload.count)
        do {
            try buffer.writeFrame(of: call.request, maxFrameSize: self.maxFrameSize)
        } catch is FrameSizeExceeded {
            call.pending.complete(.failure(RPCError(.resourceExhausted, "the request is larger than the \(self.maxFrameSize)-byte frame limit")))
            promise?.succeed()
            return
        } catch {
            call.pending.complete(.failure(RPCError(.invalidArgument, "the request cannot be encoded: \(error)")))
            promise?.succeed()
            return
        }
        var timer: Scheduled<Void>?
        if let deadline = call.deadline {
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            let callID = call.callID
            timer = context.eventLoop.scheduleTask(in: (deadline - .now).timeAmount) {
                loopBound.value.expire(callID: callID)
            }
        }
        self.waiting[call.callID] = Waiting(pending: call.pending, timer: timer)
        let callID = call.callID
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenComplete { result in
            if case .failure(let error) = result {
                loopBound.value.fail(callID: callID, RPCError(.unavailable, "could not send to \(loopBound.value.target): \(error)", notStarted: true))
            }
            promise?.completeWith(result)
        }
        context.write(Self.wrapOutboundOut(buffer), promise: written)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        if let event = event as? ForgetCallEvent {
            self.waiting.removeValue(forKey: event.callID)?.timer?.cancel()
            promise?.succeed()
        } else {
            context.triggerUserOutboundEvent(event, promise: promise)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        let response: Rekey_Rpc_V1_Response
        do {
            response = try frame.withUnsafeReadableBytes { try Rekey_Rpc_V1_Response(serializedBytes: $0) }
        } catch {
            self.logger.warning("closing connection: a frame from \(self.target) is not a valid rekey.rpc.v1.Response")
            context.close(promise: nil)
            return
        }
        guard let call = self.waiting.removeValue(forKey: response.callID) else {
            return  // The caller stopped waiting (deadline or cancellation).
        }
        call.timer?.cancel()
        let status = response.status ?? Rekey_Rpc_V1_Status()
        if status.code == .ok {
            call.pending.complete(.success(response.payload))
        } else {
            var trailers = Metadata()
            for entry in response.trailers {
                trailers.add(entry.key, entry.value)
            }
            let code = RPCError.Code(rawValue: status.code.rawValue)
            let notStarted = code == .unavailable && trailers[MetadataKey.notStarted] == "1"
            call.pending.complete(.failure(RPCError(code, status.message, trailers: trailers, notStarted: notStarted)))
            if notStarted {
                self.goingAway = true
            }
        }
        self.closeIfGoneAway(context: context)
    }

    /// Closes a connection whose server is shutting down once nothing waits on it; the client
    /// then connects anew for the next call.
    private func closeIfGoneAway(context: ChannelHandlerContext) {
        if self.goingAway, self.waiting.isEmpty {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.failAll(RPCError(.unavailable, "the connection to \(self.target) closed before the answer came"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.warning("closing connection to \(self.target)", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    private func expire(callID: UInt64) {
        self.fail(callID: callID, RPCError(.deadlineExceeded, "no answer from \(self.target) before the deadline"))
    }

    private func fail(callID: UInt64, _ error: RPCError) {
        guard let call = self.waiting.removeValue(forKey: callID) else { return }
        call.timer?.cancel()
        call.pending.complete(.failure(error))
    }

    private func failAll(_ error: RPCError) {
        let calls = self.waiting
        self.waiting.removeAll()
        for call in calls.values {
            call.timer?.cancel()
            call.pending.complete(.failure(error))
        }
    }
}

extension Duration {
    /// Whole microseconds, rounded up.
    var microseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1_000_000 + (attoseconds + 999_999_999_999) / 1_000_000_000_000
    }
}

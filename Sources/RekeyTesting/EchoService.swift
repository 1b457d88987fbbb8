import RekeyRPC
import Synchronization

/// The `rekey.testing.v1.Echo` service: answers with what it was sent, and can be told to wait,
/// fail, or block until a test releases it.
package final class EchoService: Rekey_Testing_V1_Echo.ServiceProtocol {
    /// Requests whose text is this wait for ``release()``.
    package static let blockingText = "block"
    /// Requests with this `failWithCode` throw an error that is not an `RPCError`.
    package static let unexpectedErrorCode: Int32 = -1

    private struct State {
        var running = 0
        var maxRunning = 0
        var cancelled = 0
        var blocked = 0
        var released = false
    }

    private let state = Mutex(State())

    package init() {}

    /// The most handlers that ran at the same time.
    package var maxConcurrentCalls: Int { self.state.withLock { $0.maxRunning } }
    /// Handlers that saw their task cancelled.
    package var cancelledCalls: Int { self.state.withLock { $0.cancelled } }
    /// Handlers that started to wait for ``release()``.
    package var blockedCalls: Int { self.state.withLock { $0.blocked } }
    /// Handlers running now.
    package var runningCalls: Int { self.state.withLock { $0.running } }

    /// Lets every blocked request (and all later ones) through.
    package func release() {
        self.state.withLock { $0.released = true }
    }

    /// Waits until `count` handlers are running at once, for at most ten seconds.
    package func waitUntilRunning(_ count: Int) async {
        for _ in 0..<10_000 where self.runningCalls < count {
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    package func echo(
        request: Rekey_Testing_V1_EchoRequest,
        context: ServerContext
    ) async throws -> Rekey_Testing_V1_EchoResponse {
        self.state.withLock { state in
            state.running += 1
            state.maxRunning = max(state.maxRunning, state.running)
        }
        defer { self.state.withLock { $0.running -= 1 } }

        if request.text == Self.blockingText {
            self.state.withLock { $0.blocked += 1 }
            // Poll rather than park a continuation, so that cancellation ends the wait cleanly.
            while !self.state.withLock({ $0.released }) {
                do {
                    try await Task.sleep(for: .milliseconds(1))
                } catch {
                    self.state.withLock { $0.cancelled += 1 }
                    throw error
                }
            }
        }
        if request.delayMillis > 0 {
            do {
                try await Task.sleep(for: .milliseconds(Int(request.delayMillis)))
            } catch {
                self.state.withLock { $0.cancelled += 1 }
                throw error
            }
        }
        if request.failWithCode == Self.unexpectedErrorCode {
            throw UnexpectedFailure(detail: "secret internal detail")
        }
        if request.failWithCode != 0 {
            throw RPCError(RPCError.Code(rawValue: request.failWithCode), "failed as asked", trailers: ["echo-trailer": "yes"])
        }
        var response = Rekey_Testing_V1_EchoResponse()
        response.text = request.text
        response.data = request.data
        response.requestID = context.requestID
        if let remaining = context.timeRemaining, remaining > .zero {
            let (seconds, attoseconds) = remaining.components
            response.deadlineLeftMicros = UInt64(seconds * 1_000_000 + attoseconds / 1_000_000_000_000)
        }
        return response
    }

    /// An error whose text must never reach a caller.
    package struct UnexpectedFailure: Error {
        var detail: String
    }
}

import NIOCore

/// Runs Swift tasks on one event loop's thread.
///
/// A server runs each call's handler with this as its executor preference, so a call that needs
/// no other thread (no database, no outgoing RPC) is decoded, handled and answered on the thread
/// that read it: no thread switch per call.
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = self.asUnownedTaskExecutor()
        self.eventLoop.execute {
            job.runSynchronously(on: executor)
        }
    }
}

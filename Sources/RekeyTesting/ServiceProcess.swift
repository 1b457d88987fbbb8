import Foundation

/// A Rekey executable started by a test, as ops would start it: its own process, its own data
/// folder, configured by flags and environment. Reads its log to learn the port it listens on.
package final class ServiceProcess: @unchecked Sendable {
    // @unchecked: `process` and the pipes are only touched by the test task that owns this object;
    // the log buffer is guarded by `lock`.
    private let process = Process()
    private let errors = Pipe()
    private let lock = NSLock()
    private var logText = ""

    /// The port from the server's "rpc server listening" log line.
    package private(set) var port = 0

    /// The folder of the test bundle, where SwiftPM puts the package's executables too.
    package static var productsDirectory: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    private let portPattern: String
    private let readyLine: String

    /// The RPC server's port in its "rpc server listening" line: what ``init`` waits for by default.
    package static let rpcPortPattern = #"rpc\.port[=":]+\d+"#
    package static let rpcReadyLine = "rpc server listening"

    /// Starts `executable` (a product of this package) and waits until it logs `readyLine` with a
    /// port matching `portPattern` (by default, the RPC server's). Its metrics listen on a free
    /// port (`REKEY_<SERVICE>_METRICS_LISTEN=127.0.0.1:0`) unless `environment` or a flag says
    /// otherwise, so that tests running side by side never fight over the default ports. RPC is
    /// plaintext (`REKEY_<SERVICE>_TLS=off`) unless `environment` sets up mutual TLS. With
    /// `runAs`, it runs as that unprivileged uid, as the container images run it.
    ///
    /// It waits up to `startupLimit` seconds, which is generous: while the full suite runs, a
    /// service has been seen to take over 25 s between two of its start-up log lines. One that
    /// exits ends the wait at once. One still running past the limit is stopped, and the error
    /// holds its log and what each of its threads was waiting in.
    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package init(
        _ executable: String,
        arguments: [String],
        environment: [String: String] = [:],
        portPattern: String = ServiceProcess.rpcPortPattern,
        readyLine: String = ServiceProcess.rpcReadyLine,
        runAs user: UInt32? = nil,
        startupLimit: TimeInterval = 120
    ) throws {
        self.portPattern = portPattern
        self.readyLine = readyLine
        // A path (such as a copy standing in for another build) or a product of this package.
        Self.configure(self.process, executable, arguments, runAs: user)
        var merged = ProcessInfo.processInfo.environment
        let service = URL(fileURLWithPath: executable).lastPathComponent.replacingOccurrences(of: "rekey-", with: "").uppercased().replacingOccurrences(of: "-", with: "_")
        merged["REKEY_\(service)_METRICS_LISTEN"] = "127.0.0.1:0"
        // Plaintext RPC with a credential unless the test sets up certificates (RekeySystem does).
        merged["REKEY_\(service)_TLS"] = "off"
        merged.merge(environment) { $1 }
        self.process.environment = merged
        self.process.standardError = self.errors
        self.process.standardOutput = FileHandle.nullDevice
        self.errors.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.withLock { self.logText += String(decoding: data, as: UTF8.self) }
        }
        try self.process.run()
        let deadline = Date().addingTimeInterval(startupLimit)
        while Date() < deadline {
            if let port = self.listeningPort() {
                self.port = port
                return
            }
            if !self.process.isRunning {
                // Its last words may still be in the pipe.
                Thread.sleep(forTimeInterval: 0.2)
                break
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        // What each of its threads was doing, while it still runs: where it hung, if it did.
        let threads = self.process.isRunning ? Self.threadStates(of: self.process.processIdentifier) : ""
        self.process.terminate()
        throw ServiceProcessError(message: "\(executable) did not start listening; its log:\n\(self.log)\(threads)")
    }

    /// The port of the metrics server (from its "metrics server listening" line), waiting for
    /// it up to 10 s.
    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package func metricsPort() throws -> Int {
        let deadline = Date().addingTimeInterval(10)
        repeat {
            if let line = self.log.split(separator: "\n").first(where: { $0.contains("metrics server listening") }),
               let range = line.range(of: #"metrics\.port[=":]+\d+"#, options: .regularExpression),
               let port = Int(line[range].drop { !$0.isNumber }) {
                return port
            }
            Thread.sleep(forTimeInterval: 0.02)
        } while Date() < deadline
        throw ServiceProcessError(message: "no metrics server in the log:\n\(self.log)")
    }

    /// The process id, for signals.
    package var processIdentifier: Int32 {
        self.process.processIdentifier
    }

    /// Whether the process has ended (on its own, or stopped).
    package var hasExited: Bool {
        !self.process.isRunning
    }

    /// Whether it ended badly: killed by a signal (a crash, `kill -9`) or with a failure status.
    /// A process stopped with SIGTERM drains and exits 0.
    package var endedBadly: Bool {
        !self.process.isRunning && (self.process.terminationReason == .uncaughtSignal || self.process.terminationStatus != 0)
    }

    /// Everything the process has logged so far.
    package var log: String {
        self.lock.withLock { self.logText }
    }

    /// Sends SIGTERM without waiting (``stop()`` waits): to stop several processes at once.
    package func terminate() {
        if self.process.isRunning {
            self.process.terminate()
        }
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status.
    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    @discardableResult
    package func stop() -> Int32 {
        if self.process.isRunning {
            self.process.terminate()
        }
        waitForExit(self.process)
        return self.process.terminationStatus
    }

    /// Sends SIGTERM and waits up to `limit` seconds for the process to exit; kills it with
    /// SIGKILL after that. Returns whether it exited on SIGTERM.
    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package func stop(within limit: TimeInterval) -> Bool {
        guard self.process.isRunning else { return true }
        self.process.terminate()
        let deadline = Date().addingTimeInterval(limit)
        while self.process.isRunning && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        let exited = !self.process.isRunning
        self.kill9()
        return exited
    }

    /// Kills the process with SIGKILL, as a crash or `kill -9` would, and waits for it.
    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package func kill9() {
        if self.process.isRunning {
            kill(self.process.processIdentifier, SIGKILL)
        }
        waitForExit(self.process)
    }

    /// Kills the process with SIGKILL and leaves the wait to a thread of its own: for `defer` in
    /// async tests, which must not block one of the few threads of Swift's concurrency pool.
    package func killInBackground() {
        guard self.process.isRunning else { return }
        kill(self.process.processIdentifier, SIGKILL)
        Thread { waitForExit(self.process) }.start()
    }

    deinit {
        if self.process.isRunning {
            kill(self.process.processIdentifier, SIGKILL)
            // Waited for on a thread of its own: the last reference may go on the concurrency pool.
            let process = self.process
            Thread { waitForExit(process) }.start()
        }
    }

    /// Each thread of process `pid`, from /proc: its name, its state (R running, S sleeping,
    /// D in uninterruptible I/O) and the kernel function it waits in.
    static func threadStates(of pid: Int32) -> String {
        let tasks = "/proc/\(pid)/task"
        guard let ids = try? FileManager.default.contentsOfDirectory(atPath: tasks) else { return "" }
        func read(_ path: String) -> String {
            ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let lines = ids.sorted { (Int($0) ?? 0) < (Int($1) ?? 0) }.map { id in
            // The state is the field after the parenthesised name, which may hold spaces.
            let stat = read("\(tasks)/\(id)/stat")
            let state = stat.range(of: ") ").map { String(stat[$0.upperBound...].prefix(1)) } ?? "?"
            return "  \(id) \(read("\(tasks)/\(id)/comm")): \(state), waiting in \(read("\(tasks)/\(id)/wchan"))"
        }
        return "\nits threads, still running:\n" + lines.joined(separator: "\n")
    }

    private func listeningPort() -> Int? {
        guard let line = self.log.split(separator: "\n").first(where: { $0.contains(self.readyLine) }),
              let range = line.range(of: self.portPattern, options: .regularExpression)
        else { return nil }
        return Int(line[range].drop { !$0.isNumber })
    }
}

/// The same for async code: each runs its blocking namesake on a thread of its own, so that no
/// test holds one of the few threads of Swift's concurrency pool while a process starts, drains or
/// exits (the in-process tests beside it would wait, and meet their deadlines). The blocking ones
/// are unavailable from async code, so the compiler finds any call that would block.
extension ServiceProcess {
    /// Starts `executable` and waits until it listens (``init(_:arguments:environment:portPattern:readyLine:runAs:startupLimit:)``).
    package static func start(
        _ executable: String,
        arguments: [String],
        environment: [String: String] = [:],
        portPattern: String = ServiceProcess.rpcPortPattern,
        readyLine: String = ServiceProcess.rpcReadyLine,
        runAs user: UInt32? = nil,
        startupLimit: TimeInterval = 120
    ) async throws -> ServiceProcess {
        try await offPool {
            try ServiceProcess(
                executable, arguments: arguments, environment: environment, portPattern: portPattern, readyLine: readyLine, runAs: user,
                startupLimit: startupLimit
            )
        }
    }

    /// The port of the metrics server, waiting for it up to 10 s.
    package func metricsPort() async throws -> Int {
        try await offPool { try self.metricsPort() }
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status.
    @discardableResult
    package func stop() async -> Int32 {
        await onThread { self.stop() }
    }

    /// Sends SIGTERM, waits up to `limit` seconds, then SIGKILL; whether it exited on SIGTERM.
    package func stop(within limit: TimeInterval) async -> Bool {
        await onThread { self.stop(within: limit) }
    }

    /// Kills the process with SIGKILL and waits for it.
    package func kill9() async {
        await onThread { self.kill9() }
    }

    /// Sends SIGTERM and leaves the wait to a thread of its own: for `defer` in async tests, which
    /// cannot wait. The thread keeps this object alive until the process has exited.
    package func stopInBackground() {
        guard self.process.isRunning else { return }
        self.process.terminate()
        Thread { waitForExit(self.process) }.start()
    }

    /// Runs `executable` to completion (``run(_:_:environment:inheritingEnvironment:runAs:)``).
    package static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], inheritingEnvironment: Bool = false,
        runAs user: UInt32? = nil
    ) async throws -> (status: Int32, output: String) {
        try await offPool { try Self.run(executable, arguments, environment: environment, inheritingEnvironment: inheritingEnvironment, runAs: user) }
    }
}

extension ServiceProcess {
    /// Runs `executable` (a product of this package, or a path) to completion: its exit status
    /// and everything it wrote to stdout and stderr. The environment is `environment` alone (and
    /// `REKEY_<SERVICE>_TLS=off` unless it says otherwise) unless `inheritingEnvironment`, so that
    /// no REKEY_* setting of the test run leaks in.
    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], inheritingEnvironment: Bool = false,
        runAs user: UInt32? = nil
    ) throws -> (status: Int32, output: String) {
        let process = Process()
        Self.configure(process, executable, arguments, runAs: user)
        // Plaintext RPC unless `environment` sets up mutual TLS, as for ``init``.
        let service = URL(fileURLWithPath: executable).lastPathComponent.replacingOccurrences(of: "rekey-", with: "").uppercased().replacingOccurrences(of: "-", with: "_")
        let environment = ["REKEY_\(service)_TLS": "off"].merging(environment) { $1 }
        process.environment = inheritingEnvironment ? ProcessInfo.processInfo.environment.merging(environment) { $1 } : environment
        return try runToEnd(process)
    }
}

extension ServiceProcess {
    /// `executable` (a path, or a product of this package) with `arguments`; as the unprivileged
    /// `user` (uid and gid), through util-linux's `setpriv`, when given and this process is root.
    fileprivate static func configure(_ process: Process, _ executable: String, _ arguments: [String], runAs user: UInt32?) {
        let path = executable.contains("/") ? executable : Self.productsDirectory.appendingPathComponent(executable).path
        if let user, geteuid() == 0 {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--reuid=\(user)", "--regid=\(user)", "--clear-groups", "--", path] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
        }
    }
}

package struct ServiceProcessError: Error, CustomStringConvertible {
    package var message: String
    package var description: String { self.message }

    package init(message: String) {
        self.message = message
    }
}

/// A fresh, empty folder that is removed when the test is done with it.
package final class TemporaryFolder: Sendable {
    package let path: String

    package init() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rekey-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        self.path = url.path
    }

    deinit {
        try? FileManager.default.removeItem(atPath: self.path)
    }
}

/// Runs blocking work (starting a process, waiting for a child) on a thread of its own, so that it
/// never holds one of the few threads of Swift's concurrency pool.
package func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// Runs the program at `path` to its end on a thread of its own: its exit status and everything it
/// wrote to stdout and stderr. In `directory` when given; with this process's environment unless
/// `environment` is given.
package func runProgram(
    _ path: String, _ arguments: [String], environment: [String: String]? = nil, directory: URL? = nil
) async throws -> (status: Int32, output: String) {
    try await offPool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let directory { process.currentDirectoryURL = directory }
        return try runToEnd(process)
    }
}

/// Starts `process`, which has its program and arguments, and waits for its end: its exit status
/// and everything it wrote to stdout and stderr. Blocks.
private func runToEnd(_ process: Process) throws -> (status: Int32, output: String) {
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    try process.run()
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    waitForExit(process)
    return (process.terminationStatus, text)
}

/// Waits for `process` to exit, looking every 10 ms. Foundation's `waitUntilExit()`, called on
/// another thread than the one that started the process, spins a core for as long as it waits
/// (that thread's run loop has nothing to sleep on): 1.6 s of CPU to wait 2 s for `sleep 2`.
package func waitForExit(_ process: Process) {
    while process.isRunning {
        Thread.sleep(forTimeInterval: 0.01)
    }
}

/// ``offPool(_:)`` for work that cannot fail.
package func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: body()) }.start()
    }
}

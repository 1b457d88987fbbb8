import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import RekeyInput
import RekeyRPCNIO
import ServiceLifecycle

/// The mutual-TLS settings every executable reads: `tls` (`required`, the default, or `off`),
/// `tls_ca`, `tls_cert`, `tls_key` and `tls_trust_domain` (default `rekey`).
///
/// Required by default: a service without certificates refuses to start and says how to make
/// them, or to set `tls = off` (plaintext, with the shared service credential, and a warning).
package enum TLSSettings {
    package static let defaultTrustDomain = "rekey"

    /// The certificates, loaded and checked; nil for `tls = off`. `workload` is the name this
    /// process's certificate must carry.
    package static func load(_ settings: Settings, workload: String) throws -> RPCTLS? {
        let mode = try settings.value("tls", default: "required", expected: "required or off") { ["required", "off"].contains($0) ? $0 : nil }
        guard mode == "required" else { return nil }
        guard let ca = settings.raw("tls_ca")?.value, let certificate = settings.raw("tls_cert")?.value, let key = settings.raw("tls_key")?.value else {
            throw SettingsError(
                "RPC connections need mutual TLS: set tls_ca, tls_cert and tls_key (make them with `rekey certs init --out DIR` and `rekey certs issue \(workload) --ca DIR --out DIR`), or set tls = off to run in plaintext with a service credential"
            )
        }
        let trustDomain = try settings.value("tls_trust_domain", default: Self.defaultTrustDomain, expected: "1-255 of a-z, 0-9, '.', '-' and '_', such as rekey or example.org") {
            SPIFFEID.validTrustDomain($0) ? $0 : nil
        }
        let tls: RPCTLS
        do {
            tls = try RPCTLS(files: .init(ca: ca, certificate: certificate, key: key), trustDomain: trustDomain)
        } catch let failure as RPCTLS.Failure {
            throw SettingsError(failure.description)
        }
        guard tls.workload == workload else {
            throw SettingsError(
                "tls_cert \(certificate) names the workload `\(tls.workload)`, but this is the \(workload): issue its own with `rekey certs issue \(workload)`"
            )
        }
        return tls
    }

    /// Logs what the process runs with: a warning for plaintext, the certificate for TLS.
    package static func logStart(_ tls: RPCTLS?, logger: Logger) {
        guard let tls else {
            logger.warning("tls = off: RPC connections are plaintext and callers are trusted by a shared credential; use mutual TLS (tls_ca, tls_cert, tls_key) when services run on separate hosts")
            return
        }
        logger.info(
            "mutual TLS on RPC connections",
            metadata: [
                "tls.identity": "\(SPIFFEID.make(trustDomain: tls.trustDomain, workload: tls.workload))",
                "tls.not_valid_after": "\(ISO8601DateFormatter().string(from: tls.notValidAfter))",
            ]
        )
    }
}

/// Reloads the certificate, key and CA files when they change (checked every `interval`) and on
/// SIGHUP, without touching connections already open; keeps
/// `rekey_tls_certificate_expiry_seconds` current and warns, at most once an hour, when the
/// certificate ends within 7 days.
package struct TLSReloader: Service {
    let tls: RPCTLS
    let interval: Duration
    let logger: Logger

    package init(tls: RPCTLS, interval: Duration = .seconds(10), logger: Logger) {
        self.tls = tls
        self.interval = interval
        self.logger = logger
    }

    package func run() async throws {
        let gauge = Gauge(label: "rekey_tls_certificate_expiry_seconds")
        // The expiry is looked at once at start, then at every tick.
        try await ReloadTicks.run(every: self.interval, first: "start") { ticks in
            var lastWarning: ContinuousClock.Instant?
            for await reason in ticks {
                do {
                    if try self.tls.reloadIfChanged(force: reason == "SIGHUP") {
                        self.logger.notice(
                            "TLS files read again: new connections use them",
                            metadata: ["tls.reason": "\(reason)", "tls.not_valid_after": "\(ISO8601DateFormatter().string(from: self.tls.notValidAfter))"]
                        )
                    }
                } catch {
                    self.logger.error("cannot use the changed TLS files; the ones loaded before stay in use", metadata: ["error": "\(error)"])
                }
                let left = self.tls.notValidAfter.timeIntervalSinceNow
                gauge.record(left)
                if left < 7 * 86_400, lastWarning.map({ ContinuousClock.now - $0 > .seconds(3600) }) ?? true {
                    lastWarning = .now
                    self.logger.warning(
                        left <= 0 ? "this process's TLS certificate has expired: peers refuse it" : "this process's TLS certificate expires within 7 days: issue a new one",
                        metadata: ["tls.seconds_left": "\(Int(left))", "tls.cert": "\(self.tls.files.certificate)"]
                    )
                }
            }
        }
    }
}

/// When a service reads its files again: "SIGHUP" on every SIGHUP, "timer" every `interval`, and
/// optionally `first` at once. `body` reads the reasons until graceful shutdown ends the sequence.
package enum ReloadTicks {
    package static func run(
        every interval: Duration, first: String? = nil,
        _ body: @escaping @Sendable (AsyncCancelOnGracefulShutdownSequence<AsyncStream<String>>) async -> Void
    ) async throws {
        let hangups = SignalStream.hangups()
        try await withThrowingTaskGroup(of: Void.self) { group in
            let (ticks, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(1))
            group.addTask {
                for await _ in hangups { continuation.yield("SIGHUP") }
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    continuation.yield("timer")
                }
            }
            if let first { continuation.yield(first) }
            group.addTask { await body(ticks.cancelOnGracefulShutdown()) }
            // The first task to end is the body (graceful shutdown); stop the rest.
            try await group.next()
            continuation.finish()
            group.cancelAll()
        }
    }
}

/// SIGHUP as async sequences, one per caller, all fed by one signal source made once for the
/// process (the default action, ending the process, is turned off).
///
/// Once: on Linux, Dispatch catches a signal with a handler of its own, installed when its first
/// source for that signal registers. A second `signal(SIGHUP, SIG_IGN)` after that (a second
/// source made the same way) replaced the handler, and SIGHUP was then lost in whichever thread
/// the kernel gave it to: with two listeners (TLS files and the gateway's config), a reload on
/// SIGHUP happened only now and then.
package enum SignalStream {
    private struct Listeners {
        var next: UInt64 = 0
        var continuations: [UInt64: AsyncStream<Void>.Continuation] = [:]
    }

    private static let listeners = NIOLockedValueBox(Listeners())

    // Made on first use (a static's initializer runs once, whichever thread asks first); never
    // cancelled, so its handler stays installed for the life of the process.
    nonisolated(unsafe) private static let source: any DispatchSourceSignal = {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler {
            for continuation in SignalStream.listeners.withLockedValue({ Array($0.continuations.values) }) {
                continuation.yield()
            }
        }
        source.resume()
        return source
    }()

    package static func hangups() -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let id = Self.listeners.withLockedValue { listeners in
            defer { listeners.next += 1 }
            listeners.continuations[listeners.next] = continuation
            return listeners.next
        }
        continuation.onTermination = { _ in
            _ = Self.listeners.withLockedValue { $0.continuations.removeValue(forKey: id) }
        }
        _ = Self.source
        return stream
    }
}

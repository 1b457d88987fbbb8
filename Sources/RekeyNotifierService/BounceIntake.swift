import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import RekeyCrypto
import ServiceLifecycle

/// Takes bounce reports in, from the bounce listener or the bounce maildir: parses them, records
/// them on their message, and keeps whatever it cannot parse or match in a folder for a person
/// to read, counted in `rekey_notifier_bounce_reports_total{kind, outcome}` (outcome: matched,
/// unmatched, unparsed).
package struct BounceIntake: Sendable {
    package let store: OutboxStore
    /// Where reports that name no message, or are no report at all, are kept.
    package let keepFolder: String
    package let logger: Logger

    package init(store: OutboxStore, keepFolder: String, logger: Logger) {
        self.store = store
        self.keepFolder = keepFolder
        self.logger = logger
    }

    /// Handles one received message. Throws only when it could not be recorded or kept (the
    /// sender should then try again); a report it cannot use is kept and is no error.
    package func receive(_ raw: [UInt8], envelopeRecipients: [String] = []) async throws {
        guard let report = BounceReport.parse(raw) else {
            try self.keep(raw, why: "unparsed")
            Counter(label: "rekey_notifier_bounce_reports_total", dimensions: [("kind", "unknown"), ("outcome", "unparsed")]).increment()
            self.logger.notice("a message to the bounce address is no DSN or ARF report: kept for a person to read", metadata: ["folder": "\(self.keepFolder)"])
            return
        }
        let outcome = try await self.store.recordReport(report, envelopeRecipients: envelopeRecipients)
        switch outcome {
        case .unmatched:
            try self.keep(raw, why: "unmatched")
            Counter(label: "rekey_notifier_bounce_reports_total", dimensions: [("kind", report.kind.rawValue), ("outcome", "unmatched")]).increment()
            self.logger.notice("a \(report.kind.rawValue) report names no message of ours: kept", metadata: ["folder": "\(self.keepFolder)"])
        case .recorded(let id, let state, let suppressed):
            Counter(label: "rekey_notifier_bounce_reports_total", dimensions: [("kind", report.kind.rawValue), ("outcome", "matched")]).increment()
            self.logger.info(
                "report after delivery recorded",
                metadata: ["message.id": "\(id)", "report.kind": "\(report.kind.rawValue)", "message.state": "\(state)", "suppressed": "\(suppressed)"]
            )
        }
    }

    private func keep(_ raw: [UInt8], why: String) throws {
        try FileManager.default.createDirectory(atPath: self.keepFolder, withIntermediateDirectories: true)
        let name = "\(Int(Date().timeIntervalSince1970 * 1000))-\(why)-\(Hex.encode(try OpenSSL.randomBytes(4))).eml"
        guard FileManager.default.createFile(atPath: self.keepFolder + "/" + name, contents: Data(raw)) else {
            throw NotifierError.failedPrecondition("cannot write to \(self.keepFolder)")
        }
    }
}

/// Reads bounce reports that the site's MTA delivers into a maildir (`bounce_maildir`): every
/// file in `new/` is taken in and then moved to `cur/`; a file that cannot be handled stays in
/// `new/` and is tried again on the next pass.
package struct BounceMaildirReader: Service {
    package let folder: String
    package let intake: BounceIntake
    package let interval: Duration

    package init(folder: String, intake: BounceIntake, interval: Duration = .seconds(5)) {
        self.folder = folder
        self.intake = intake
        self.interval = interval
    }

    package func run() async throws {
        for sub in ["new", "cur", "tmp"] {
            try FileManager.default.createDirectory(atPath: "\(self.folder)/\(sub)", withIntermediateDirectories: true)
        }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await self.pass()
            try? await Task.sleep(for: self.interval)
        }
    }

    /// One look at `new/`.
    package func pass() async {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: self.folder + "/new")) ?? []).sorted()
        for name in names where !name.hasPrefix(".") {
            let path = "\(self.folder)/new/\(name)"
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                  (attributes[.size] as? NSNumber)?.intValue ?? 0 <= BounceReport.maximumSize,
                  let data = FileManager.default.contents(atPath: path)
            else {
                self.intake.logger.warning("a file in the bounce maildir is too large or unreadable: left where it is", metadata: ["file": "\(path)"])
                continue
            }
            do {
                try await self.intake.receive(Array(data))
                try FileManager.default.moveItem(atPath: path, toPath: "\(self.folder)/cur/\(name):2,S")
            } catch {
                self.intake.logger.error("cannot take in a bounce report: tried again later", metadata: ["file": "\(path)", "error": "\(error)"])
            }
        }
    }
}

/// An SMTP server for the bounce domain (`bounce_listen`): accepts mail only for the VERP
/// addresses of this notifier (`bounces+m_…@<bounce domain>`), at most
/// ``BounceReport/maximumSize`` per message, and answers 250 only once the report is recorded or
/// kept. It speaks just what an MTA sending a bounce needs: EHLO/HELO, MAIL, RCPT, DATA, RSET,
/// NOOP, QUIT.
package struct BounceListener: Service {
    package let host: String
    package let port: Int
    package let intake: BounceIntake
    package let hostName: String
    /// Called with the bound port once listening (tests listen on port 0).
    package let onListening: @Sendable (Int) -> Void

    package init(host: String, port: Int, intake: BounceIntake, hostName: String, onListening: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.host = host
        self.port = port
        self.intake = intake
        self.hostName = hostName
        self.onListening = onListening
    }

    package func run() async throws {
        let intake = self.intake
        let hostName = self.hostName
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(BounceSMTPHandler(intake: intake, hostName: hostName))
                }
            }
            .bind(host: self.host, port: self.port).get()
        let port = channel.localAddress?.port ?? self.port
        self.intake.logger.info("bounce listener ready", metadata: ["bounce.listen": "\(self.host):\(port)"])
        self.onListening(port)
        await withGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
    }
}

/// One SMTP session of the bounce listener, on its channel's event loop.
final class BounceSMTPHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: touched only on its channel's event loop (the intake's answer is handed back
    // to it with `execute`).
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let intake: BounceIntake
    let hostName: String
    private var line: [UInt8] = []
    private var inData = false
    private var data: [UInt8] = []
    private var tooLarge = false
    private var recipients: [String] = []
    private var hasSender = false
    private var busy = false
    private var pending: [UInt8] = []

    init(intake: BounceIntake, hostName: String) {
        self.intake = intake
        self.hostName = hostName
    }

    func channelActive(context: ChannelHandlerContext) {
        self.reply(context, "220 \(self.hostName) Rekey bounce listener ready")
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        self.consume(Array(buffer.readableBytesView), context: context)
    }

    /// Feeds bytes through the session; while a report is being stored, what comes behind it
    /// waits (up to 64 KiB) and is read once the answer is out.
    private func consume(_ bytes: [UInt8], context: ChannelHandlerContext) {
        var index = 0
        while index < bytes.count {
            if self.busy {
                self.pending += bytes[index...]
                if self.pending.count > 65_536 { context.close(promise: nil) }
                return
            }
            let byte = bytes[index]
            index += 1
            if byte == 10 {
                if self.line.last == 13 { self.line.removeLast() }
                let line = self.line
                self.line = []
                self.handle(line, context: context)
            } else {
                self.line.append(byte)
                // A command line is at most 512 bytes (RFC 5321), a text line 1,000.
                if self.line.count > (self.inData ? 1000 : 512) * 4 {
                    self.reply(context, "500 5.5.2 Line too long")
                    context.close(promise: nil)
                    return
                }
            }
        }
    }

    private func handle(_ line: [UInt8], context: ChannelHandlerContext) {
        if self.inData {
            if line == [46] {
                self.inData = false
                self.finishData(context)
                return
            }
            guard !self.tooLarge else { return }
            let text = line.first == 46 ? Array(line.dropFirst()) : line
            self.data += text + [13, 10]
            if self.data.count > BounceReport.maximumSize {
                self.tooLarge = true
                self.data = []
            }
            return
        }
        let text = String(decoding: line, as: UTF8.self)
        let verb = text.prefix(while: { $0 != " " && $0 != ":" }).uppercased()
        switch verb {
        case "EHLO":
            self.reply(context, "250-\(self.hostName)\r\n250-SIZE \(BounceReport.maximumSize)\r\n250-8BITMIME\r\n250 SMTPUTF8")
        case "HELO":
            self.reply(context, "250 \(self.hostName)")
        case "MAIL":
            self.hasSender = true
            self.recipients = []
            self.reply(context, "250 2.1.0 Ok")
        case "RCPT":
            guard self.hasSender else { return self.reply(context, "503 5.5.1 MAIL first") }
            let address = BounceReport.bareAddress(String(text.drop { $0 != ":" }.dropFirst()).split(separator: " ").first.map(String.init) ?? "")
            guard self.intake.store.verpMessageID(address) != nil else {
                return self.reply(context, "550 5.1.1 <\(address.prefix(100))>: not a bounce address of this notifier")
            }
            guard self.recipients.count < 100 else { return self.reply(context, "452 4.5.3 Too many recipients") }
            self.recipients.append(address)
            self.reply(context, "250 2.1.5 Ok")
        case "DATA":
            guard !self.recipients.isEmpty else { return self.reply(context, "503 5.5.1 RCPT first") }
            self.inData = true
            self.data = []
            self.tooLarge = false
            self.reply(context, "354 End data with <CR><LF>.<CR><LF>")
        case "RSET":
            self.reset()
            self.reply(context, "250 2.0.0 Ok")
        case "NOOP":
            self.reply(context, "250 2.0.0 Ok")
        case "QUIT":
            self.reply(context, "221 2.0.0 Bye")
            context.close(promise: nil)
        default:
            self.reply(context, "502 5.5.2 Command not recognised")
        }
    }

    private func finishData(_ context: ChannelHandlerContext) {
        if self.tooLarge {
            self.reset()
            return self.reply(context, "552 5.3.4 Message too large")
        }
        let (raw, recipients) = (self.data, self.recipients)
        self.reset()
        self.busy = true
        let intake = self.intake
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        Task {
            let answer: String
            do {
                try await intake.receive(raw, envelopeRecipients: recipients)
                answer = "250 2.0.0 Ok: report taken"
            } catch {
                intake.logger.error("cannot take in a bounce report: the sender is asked to try again", metadata: ["error": "\(error)"])
                answer = "451 4.3.0 Cannot store the report now, try again later"
            }
            loop.execute {
                let (handler, context) = bound.value
                handler.busy = false
                handler.reply(context, answer)
                let pending = handler.pending
                handler.pending = []
                handler.consume(pending, context: context)
            }
        }
    }

    private func reset() {
        self.hasSender = false
        self.recipients = []
        self.data = []
        self.inData = false
        self.tooLarge = false
    }

    private func reply(_ context: ChannelHandlerContext, _ text: String) {
        context.writeAndFlush(self.wrapOutboundOut(context.channel.allocator.buffer(string: text + "\r\n")), promise: nil)
    }
}

import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import RekeyInput

/// Where and how to reach the SMTP server (a relay or the recipients' server).
package struct SMTPConfiguration: Sendable {
    package var host: String
    package var port: Int
    /// The name this client gives in EHLO.
    package var heloName: String
    package var username: String?
    package var password: String?
    package var connectTimeout: Duration = .seconds(10)
    /// For the greeting and every command's reply.
    package var commandTimeout: Duration = .seconds(60)
    /// For the reply to the end of DATA, which servers may take longer to give.
    package var dataTimeout: Duration = .seconds(180)
    /// STARTTLS: when the server offers it (`opportunistic`: encrypted, the certificate checked
    /// only when `caFile` is set, as Postfix's `may`), always with the certificate checked
    /// (`verify`, or its older name `required`: a server that does not offer it, or whose
    /// certificate does not check out, gets nothing), or never (`off`).
    package var tls: TLSMode = .opportunistic
    /// PEM certificates to trust instead of the system's.
    package var caFile: String?
    /// The name the server's certificate must carry; by default the host, unless it is an IP
    /// address (then only the chain is checked).
    package var tlsServerName: String?

    package enum TLSMode: String, Sendable, CaseIterable {
        case opportunistic, verify, required, off

        /// STARTTLS must happen, with a certificate that checks out.
        var isMandatory: Bool { self == .verify || self == .required }
    }

    package init(host: String, port: Int, heloName: String) {
        self.host = host
        self.port = port
        self.heloName = heloName
    }
}

extension SMTPConfiguration {
    /// Whether `name` may be given in EHLO (RFC 5321 4.1.1.1): a domain name (letters, digits,
    /// hyphens; labels of 1-63, at most 253 in all) or an address literal (`[192.0.2.1]`,
    /// `[IPv6:2001:db8::1]`). Nothing else goes on the command line.
    package static func isValidHeloName(_ name: String) -> Bool {
        if name.hasPrefix("["), name.hasSuffix("]"), name.utf8.count <= 64 {
            let inner = name.dropFirst().dropLast()
            return !inner.isEmpty && inner.allSatisfy { $0.isASCII && ($0.isHexDigit || $0 == "." || $0 == ":" || $0 == "v" || $0 == "I" || $0 == "P") }
        }
        guard (1...253).contains(name.utf8.count) else { return false }
        return name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            (1...63).contains(label.utf8.count) && label.first != "-" && label.last != "-"
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        }
    }

    /// Whether `name` is fully qualified: a domain with a dot that is not `localhost` (or an
    /// address literal). Relays with `reject_non_fqdn_helo_hostname` (Postfix) refuse anything else.
    package static func isFullyQualified(_ name: String) -> Bool {
        if name.hasPrefix("[") { return true }
        let lowered = name.lowercased()
        return lowered.contains(".") && !lowered.hasSuffix(".localdomain") && lowered != "localhost.localdomain" && !lowered.hasSuffix(".local")
    }

    /// The EHLO name when none is configured: this host's fully qualified name when it has one
    /// (`hostname -f`), otherwise the domain of the sender address, otherwise the short name.
    package static func defaultHeloName(hostName: String, canonicalName: String?, fromAddress: String) -> String {
        for candidate in [canonicalName ?? "", hostName] where Self.isValidHeloName(candidate) && Self.isFullyQualified(candidate) {
            return candidate
        }
        let fromDomain = String(fromAddress.split(separator: "@").last ?? "")
        if Self.isValidHeloName(fromDomain), Self.isFullyQualified(fromDomain) {
            return fromDomain
        }
        return Self.isValidHeloName(hostName) ? hostName : "localhost"
    }

    /// This host's canonical name as the resolver gives it (what `hostname -f` prints), or nil.
    package static func canonicalHostName(_ hostName: String) -> String? {
        var hints = addrinfo()
        hints.ai_flags = AI_CANONNAME
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(hostName, nil, &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(result) }
        return first.pointee.ai_canonname.map { String(cString: $0) }
    }
}

/// An SMTP client (RFC 5321) for one delivery worker: EHLO (HELO when refused), AUTH PLAIN or
/// LOGIN when configured, MAIL FROM, RCPT TO, DATA with dot-stuffing; a timeout on every step; the
/// connection is kept for the next message and opened again when the server closed it.
///
/// STARTTLS (RFC 3207) upgrades the connection when the server offers it, and is required when
/// configured; certificates are verified against the system's roots or `caFile`.
package actor SMTPTransport: MailTransport {
    package nonisolated let configuration: SMTPConfiguration
    package nonisolated var name: String { "smtp" }
    package nonisolated var destination: String { "\(self.configuration.host):\(self.configuration.port)" }
    private let group: any EventLoopGroup
    private let tlsContext: NIOSSLContext?
    private var connection: SMTPConnection?
    /// What the server of `connection` offered in its (last) EHLO reply, upper-cased.
    private var capabilities: [String] = []
    /// Transactions `connection` has had refused. Relays count a session's errors and slow down
    /// or hang up past a limit (Postfix: every reply delayed 1 s after 10 errors without mail
    /// delivered, 421 after 20), so a session is ended before it gets there.
    private var refusals = 0

    /// Refused transactions after which the session is ended and the next message opens a fresh
    /// one: well below Postfix's `smtpd_soft_error_limit` (10). Mail accepted in between does
    /// not reset the count, as relays differ on whether it resets theirs.
    static let refusalsPerSession = 5

    /// Throws when the TLS settings cannot be used (an unreadable CA file).
    package init(configuration: SMTPConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        self.configuration = configuration
        self.group = group
        if configuration.tls == .off {
            self.tlsContext = nil
        } else {
            var tls = TLSConfiguration.makeClientConfiguration()
            // The chain is checked by the TLS library, the name by `checkName` after the
            // handshake: the library would also accept a certificate for the relay's IP address
            // in place of the configured name, and refuse a name-only one for an IP relay.
            tls.certificateVerification = .noHostnameVerification
            if let caFile = configuration.caFile {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } else if configuration.tls == .opportunistic {
                // Encrypt when possible: a relay's self-signed certificate (stock Debian Postfix)
                // still gets encrypted mail. Checking it takes smtp_ca_file or smtp_tls = verify.
                tls.certificateVerification = .none
            }
            self.tlsContext = try NIOSSLContext(configuration: tls)
        }
    }

    /// A step that ended the attempt.
    private struct StepFailure: Error {
        var result: DeliveryResult
        var networkError: Bool
    }

    package func deliver(from: String, to: String, content: [UInt8]) async -> DeliveryResult {
        var reused = self.connection != nil
        while true {
            do {
                let connection = try await self.openIfNeeded()
                return try await self.transaction(connection, from: from, to: to, content: content)
            } catch let failure as StepFailure {
                if failure.networkError || failure.result.replyCode == 421 {
                    await self.dropConnection()
                    // A kept connection the server closed while idle: try once on a fresh one.
                    if reused && failure.result.stage == "MAIL" {
                        reused = false
                        continue
                    }
                } else if let connection = self.connection {
                    self.refusals += 1
                    if self.refusals >= Self.refusalsPerSession {
                        await self.close()
                    } else if failure.result.stage != "END" {
                        _ = try? await self.command(connection, "RSET", stage: "RSET", accept: 250...250)
                    }
                }
                return failure.result
            } catch {
                await self.dropConnection()
                var result = DeliveryResult(outcome: .temporaryFailure, stage: "CONNECT")
                result.error = "\(error)"
                return result
            }
        }
    }

    package func close() async {
        if let connection = self.connection {
            _ = try? await self.command(connection, "QUIT", stage: "QUIT", accept: 221...221)
        }
        await self.dropConnection()
    }

    private func dropConnection() async {
        self.refusals = 0
        if let connection = self.connection {
            self.connection = nil
            await connection.close()
        }
    }

    private func openIfNeeded() async throws -> SMTPConnection {
        if let connection = self.connection, connection.isActive { return connection }
        await self.dropConnection()
        let connection: SMTPConnection
        do {
            connection = try await SMTPConnection.connect(
                host: self.configuration.host, port: self.configuration.port, group: self.group, timeout: self.configuration.connectTimeout
            )
        } catch {
            var result = DeliveryResult(outcome: .temporaryFailure, stage: "CONNECT")
            result.error = "cannot connect to \(self.destination): \(Self.describe(error))"
            throw StepFailure(result: result, networkError: true)
        }
        do {
            _ = try await self.expect(connection, stage: "GREETING", accept: 220...220, timeout: self.configuration.commandTimeout)
            var capabilities: [String]
            do {
                let ehlo = try await self.command(connection, "EHLO \(self.configuration.heloName)", stage: "EHLO", accept: 250...250)
                capabilities = ehlo.lines.dropFirst().map { $0.uppercased() }
            } catch let failure as StepFailure where !failure.networkError && failure.result.replyCode >= 500 {
                _ = try await self.command(connection, "HELO \(self.configuration.heloName)", stage: "HELO", accept: 250...250)
                capabilities = []
            }
            if let tlsContext = self.tlsContext, capabilities.contains(where: { $0 == "STARTTLS" || $0.hasPrefix("STARTTLS ") }) {
                _ = try await self.command(connection, "STARTTLS", stage: "STARTTLS", accept: 220...220)
                do {
                    try await connection.startTLS(context: tlsContext, serverName: self.tlsServerName)
                } catch {
                    var result = DeliveryResult(outcome: .temporaryFailure, stage: "STARTTLS")
                    result.error = "cannot start TLS with \(self.tlsServerName ?? self.configuration.host): \(Self.describe(error))"
                    throw StepFailure(result: result, networkError: true)
                }
                // RFC 3207: forget what was said before TLS and greet again. A handshake that
                // fails (an untrusted certificate) shows here, as the connection closing.
                do {
                    let ehlo = try await self.command(connection, "EHLO \(self.configuration.heloName)", stage: "EHLO", accept: 250...250)
                    capabilities = ehlo.lines.dropFirst().map { $0.uppercased() }
                } catch var failure as StepFailure where failure.networkError {
                    failure.result.stage = "STARTTLS"
                    failure.result.error = "cannot start TLS with \(self.tlsServerName ?? self.configuration.host): " + (await connection.failureDescription() ?? failure.result.error)
                    throw failure
                }
                try await self.checkName(connection)
            } else if self.configuration.tls.isMandatory {
                var result = DeliveryResult(outcome: .temporaryFailure, stage: "STARTTLS")
                result.error = "the server does not offer STARTTLS, and smtp_tls is required: nothing was sent in the clear"
                throw StepFailure(result: result, networkError: false)
            }
            if let username = self.configuration.username {
                try await self.authenticate(connection, username: username, password: self.configuration.password ?? "", capabilities: capabilities)
            }
            self.capabilities = capabilities
        } catch {
            await connection.close()
            throw error
        }
        self.connection = connection
        return connection
    }

    /// Whether the relay's certificate is checked at all (opportunistic without a CA file is not).
    private var checksCertificate: Bool {
        self.configuration.tls.isMandatory || (self.configuration.tls == .opportunistic && self.configuration.caFile != nil)
    }

    /// After the handshake: the certificate must carry the expected name among its DNS names
    /// (a `*.` wildcard stands for one label). An IP relay without smtp_tls_server_name is
    /// checked by its chain only.
    private func checkName(_ connection: SMTPConnection) async throws {
        guard self.checksCertificate, let expected = self.tlsServerName else { return }
        let names = (try? await connection.peerCertificate()).map(Self.dnsNames) ?? []
        guard Self.certificateNames(names, match: expected) else {
            var result = DeliveryResult(outcome: .temporaryFailure, stage: "STARTTLS")
            let carried = names.isEmpty ? "no DNS name" : names.prefix(5).joined(separator: ", ")
            result.error = "cannot start TLS with \(expected): the relay's certificate does not carry that name (it carries \(carried)): set smtp_tls_server_name to a name it carries"
            throw StepFailure(result: result, networkError: true)
        }
    }

    /// The DNS names in a certificate's subjectAltName.
    static func dnsNames(_ certificate: NIOSSLCertificate) -> [String] {
        certificate._subjectAlternativeNames().compactMap { name in
            guard name.nameType == .dnsName else { return nil }
            return name.contents.withUnsafeBufferPointer { String(decoding: $0, as: UTF8.self) }
        }
    }

    /// Whether `names` include `expected` (ASCII case ignored, a trailing dot ignored), a
    /// leading `*.` matching exactly one label.
    package static func certificateNames(_ names: [String], match expected: String) -> Bool {
        let wanted = (expected.hasSuffix(".") ? String(expected.dropLast()) : expected).lowercased()
        return names.contains { raw in
            let name = (raw.hasSuffix(".") ? String(raw.dropLast()) : raw).lowercased()
            if name.hasPrefix("*.") {
                guard let dot = wanted.firstIndex(of: ".") else { return false }
                return wanted[..<dot].count > 0 && !wanted[..<dot].contains("*") && wanted[dot...] == name.dropFirst()
            }
            return name == wanted
        }
    }

    /// The name to check the certificate against; nil for an IP address without a configured name.
    private var tlsServerName: String? {
        if let name = self.configuration.tlsServerName { return name }
        let host = self.configuration.host
        let isIP = host.contains(":") || host.split(separator: ".").allSatisfy { Int($0) != nil }
        return isIP ? nil : host
    }

    private func authenticate(_ connection: SMTPConnection, username: String, password: String, capabilities: [String]) async throws {
        let mechanisms = capabilities.first { $0.hasPrefix("AUTH ") || $0.hasPrefix("AUTH=") }?.dropFirst(5).split(separator: " ") ?? []
        if mechanisms.contains("PLAIN") {
            let token = Data(([0] + Array(username.utf8) + [0] + Array(password.utf8))).base64EncodedString()
            _ = try await self.command(connection, "AUTH PLAIN \(token)", stage: "AUTH", accept: 235...235, secret: true)
        } else if mechanisms.contains("LOGIN") {
            _ = try await self.command(connection, "AUTH LOGIN", stage: "AUTH", accept: 334...334)
            _ = try await self.command(connection, Data(username.utf8).base64EncodedString(), stage: "AUTH", accept: 334...334, secret: true)
            _ = try await self.command(connection, Data(password.utf8).base64EncodedString(), stage: "AUTH", accept: 235...235, secret: true)
        } else {
            var result = DeliveryResult(outcome: .temporaryFailure, stage: "AUTH")
            result.error = "a username is configured but the server offers neither AUTH PLAIN nor AUTH LOGIN"
            throw StepFailure(result: result, networkError: false)
        }
    }

    private func transaction(_ connection: SMTPConnection, from: String, to: String, content: [UInt8]) async throws -> DeliveryResult {
        // Domains in ASCII (IDNA), so only a non-ASCII local part needs SMTPUTF8.
        guard let from = IDNA.asciiDomainAddress(from), let to = IDNA.asciiDomainAddress(to) else {
            var result = DeliveryResult(outcome: .permanentFailure, stage: "MAIL")
            result.enhancedStatus = "5.1.3"
            result.error = "the address's domain cannot be written as an internationalised domain name: not sent"
            return result
        }
        var parameters = ""
        // SIZE (RFC 1870): announced, so a server that will not take it says so before DATA;
        // over a limit it advertised, not sent at all.
        if let size = self.capabilities.first(where: { $0 == "SIZE" || $0.hasPrefix("SIZE ") }) {
            if let limit = Int(size.dropFirst(4).trimmingCharacters(in: .whitespaces)), limit > 0, content.count > limit {
                var result = DeliveryResult(outcome: .permanentFailure, stage: "MAIL")
                result.enhancedStatus = "5.3.4"
                result.error = "the message is \(content.count) bytes, more than the \(limit) the relay takes (its SIZE): not sent"
                return result
            }
            parameters += " SIZE=\(content.count)"
        }
        // SMTPUTF8 (RFC 6531) for an address with non-ASCII characters, when the server offers it.
        if !(from.utf8.allSatisfy { $0 < 0x80 } && to.utf8.allSatisfy { $0 < 0x80 }) {
            guard self.capabilities.contains("SMTPUTF8") else {
                var result = DeliveryResult(outcome: .permanentFailure, stage: "MAIL")
                result.enhancedStatus = "5.6.7"
                result.error = "the address has non-ASCII characters before the @ and the relay does not offer SMTPUTF8: not sent"
                return result
            }
            parameters += " SMTPUTF8"
        }
        _ = try await self.command(connection, "MAIL FROM:<\(from)>\(parameters)", stage: "MAIL", accept: 250...250)
        _ = try await self.command(connection, "RCPT TO:<\(to)>", stage: "RCPT", accept: 250...251)
        _ = try await self.command(connection, "DATA", stage: "DATA", accept: 354...354)
        do {
            try await connection.write(Self.dotStuffed(content))
        } catch {
            var result = DeliveryResult(outcome: .temporaryFailure, stage: "END")
            result.error = "the connection failed while sending the message: \(Self.describe(error))"
            throw StepFailure(result: result, networkError: true)
        }
        let reply = try await self.expect(connection, stage: "END", accept: 250...250, timeout: self.configuration.dataTimeout)
        var result = Self.result(reply, stage: "END", outcome: .accepted)
        result.remoteQueueID = Self.queueID(in: reply.text)
        return result
    }

    private func command(_ connection: SMTPConnection, _ line: String, stage: String, accept: ClosedRange<Int>, secret: Bool = false) async throws -> SMTPReply {
        do {
            try await connection.write(Array((line + "\r\n").utf8))
        } catch {
            var result = DeliveryResult(outcome: .temporaryFailure, stage: stage)
            result.error = "the connection failed: \(Self.describe(error))"
            throw StepFailure(result: result, networkError: true)
        }
        return try await self.expect(connection, stage: stage, accept: accept, timeout: self.configuration.commandTimeout)
    }

    private func expect(_ connection: SMTPConnection, stage: String, accept: ClosedRange<Int>, timeout: Duration) async throws -> SMTPReply {
        let reply: SMTPReply
        do {
            reply = try await connection.reply(timeout: timeout)
        } catch {
            var result = DeliveryResult(outcome: .temporaryFailure, stage: stage)
            result.error = Self.describe(error)
            throw StepFailure(result: result, networkError: true)
        }
        guard accept.contains(reply.code) else {
            throw StepFailure(result: Self.result(reply, stage: stage, outcome: reply.code >= 500 ? .permanentFailure : .temporaryFailure), networkError: false)
        }
        return reply
    }

    static func result(_ reply: SMTPReply, stage: String, outcome: AttemptOutcomeValue) -> DeliveryResult {
        var result = DeliveryResult(outcome: outcome, stage: stage)
        result.replyCode = reply.code
        (result.enhancedStatus, result.replyText) = reply.enhancedStatusAndText
        return result
    }

    /// The server's queue id in a final 250 reply, in the forms Postfix, Exim, Sendmail and
    /// others use ("queued as 4F1ABC", "id=1abc-2", "<id> Message accepted").
    static func queueID(in text: String) -> String {
        let patterns = [#"queued as ([A-Za-z0-9._@<>-]+)"#, #"id=([A-Za-z0-9._@-]+)"#, #"^(?:OK )?<?([A-Za-z0-9._-]{6,})>? (?:Message accepted|message accepted)"#]
        for pattern in patterns {
            if let range = text.range(of: pattern, options: .regularExpression) {
                let match = String(text[range])
                let regex = try? NSRegularExpression(pattern: pattern)
                if let found = regex?.firstMatch(in: match, range: NSRange(match.startIndex..., in: match)),
                   let group = Range(found.range(at: 1), in: match) {
                    return String(match[group])
                }
            }
        }
        return ""
    }

    /// The message with lines that start with a dot doubled, ending in CRLF . CRLF.
    static func dotStuffed(_ content: [UInt8]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(content.count + 64)
        var atLineStart = true
        for byte in content {
            if atLineStart && byte == UInt8(ascii: ".") { output.append(byte) }
            output.append(byte)
            atLineStart = byte == UInt8(ascii: "\n")
        }
        if !output.isEmpty && !(output.count >= 2 && output[output.count - 2] == 13 && output[output.count - 1] == 10) {
            output += [13, 10]
        }
        output += Array(".\r\n".utf8)
        return output
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? SMTPConnectionError { return error.description }
        if error is NIOSSLError || error is NIOSSLExtraError { return Self.describeTLS(error) }
        if let error = error as? IOError { return error.description }
        return "\(error)"
    }
}

extension SMTPTransport {
    /// A TLS failure in words for the person reading the attempt, with the setting to change;
    /// never the TLS library's own text (it carries source paths and numbers).
    package static func describeTLS(_ error: any Error) -> String {
        let text = "\(error)"
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return "the relay's certificate does not carry the expected name (the host of smtp_server, or smtp_tls_server_name): set smtp_tls_server_name to a name it carries"
        }
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return "the relay's certificate is not trusted (self-signed, from an unknown CA, expired, or for another name): set smtp_ca_file to the CA that signed it (and smtp_tls_server_name to a name it carries), or smtp_tls = opportunistic without smtp_ca_file to encrypt without checking it"
        }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("UNSUPPORTED_PROTOCOL") || text.contains("TLSV1_ALERT_PROTOCOL_VERSION") {
            return "the relay offers no TLS version this notifier accepts (TLS 1.2 or newer)"
        }
        // The library's reason code alone (such as NO_SHARED_CIPHER), without paths.
        let reason = text.range(of: "OPENSSL_internal:").map { found in
            text[found.upperBound...].prefix { $0.isASCII && ($0.isUppercase || $0.isNumber || $0 == "_") }
        }.flatMap { $0.isEmpty ? nil : $0 }
        return "the TLS handshake with the relay failed" + (reason.map { " (\($0))" } ?? "")
    }
}

/// One reply of an SMTP server: its code and its lines' text.
/// One line of an SMTP reply (RFC 5321 4.2): three digits, then a space (the last line), a hyphen
/// (more follow) or nothing, then text. Anything else is malformed.
package struct SMTPReplyLine: Sendable, Hashable {
    package var code: Int
    package var isLast: Bool
    package var text: String

    package init?(parsing bytes: [UInt8]) {
        guard bytes.count >= 3, bytes.prefix(3).allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        let code = bytes.prefix(3).reduce(0) { $0 * 10 + Int($1 - 0x30) }
        guard bytes.count == 3 || bytes[3] == UInt8(ascii: " ") || bytes[3] == UInt8(ascii: "-") else { return nil }
        self.code = code
        self.isLast = bytes.count == 3 || bytes[3] == UInt8(ascii: " ")
        self.text = bytes.count > 4 ? String(decoding: bytes[4...], as: UTF8.self) : ""
    }
}

package struct SMTPReply: Sendable, Hashable {
    package var code: Int
    package var lines: [String]

    package init(code: Int, lines: [String]) {
        self.code = code
        self.lines = lines
    }

    package var text: String { self.lines.joined(separator: " / ") }

    /// The RFC 3463 enhanced status code at the start of the reply, and the rest of the text.
    package var enhancedStatusAndText: (String, String) {
        let text = self.text
        if let range = text.range(of: #"^[245]\.[0-9]{1,3}\.[0-9]{1,3}( |$)"#, options: .regularExpression) {
            return (text[range].trimmingCharacters(in: .whitespaces), String(text[range.upperBound...]))
        }
        return ("", text)
    }
}

package enum SMTPConnectionError: Error, CustomStringConvertible {
    case timeout(Duration)
    case closed
    case malformedReply(String)

    package var description: String {
        switch self {
        case .timeout(let duration): return "no reply within \(duration)"
        case .closed: return "the server closed the connection"
        case .malformedReply(let line): return "the server sent something that is not an SMTP reply: \(line.prefix(100))"
        }
    }
}

/// A TCP connection to an SMTP server, reading replies (multi-line ones joined) in order.
final class SMTPConnection: Sendable {
    private let channel: any Channel
    private let handler: NIOLoopBound<SMTPReplyHandler>

    private init(channel: any Channel, handler: NIOLoopBound<SMTPReplyHandler>) {
        self.channel = channel
        self.handler = handler
    }

    var isActive: Bool { self.channel.isActive }

    static func connect(host: String, port: Int, group: any EventLoopGroup, timeout: Duration) async throws -> SMTPConnection {
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(.nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPLineDecoder()))
                    try channel.pipeline.syncOperations.addHandler(SMTPReplyHandler())
                }
            }
            .connect(host: host, port: port)
            .get()
        let handler = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: SMTPReplyHandler.self), eventLoop: channel.eventLoop)
        }.get()
        return SMTPConnection(channel: channel, handler: handler)
    }

    /// Puts TLS under the SMTP conversation (after the server's 220 to STARTTLS). Writes wait for
    /// the handshake; a failed handshake fails the next reply.
    func startTLS(context: NIOSSLContext, serverName: String?) async throws {
        let channel = self.channel
        try await channel.eventLoop.submit {
            let handler = try NIOSSLClientHandler(context: context, serverHostname: serverName)
            try channel.pipeline.syncOperations.addHandler(handler, position: .first)
        }.get()
    }

    /// The certificate the server presented, once TLS is up.
    func peerCertificate() async throws -> NIOSSLCertificate? {
        try await self.channel.nioSSL_peerCertificate().get()
    }

    /// What closed the connection, when an error did (such as a failed TLS handshake).
    func failureDescription() async -> String? {
        let handler = self.handler
        return try? await self.channel.eventLoop.submit { handler.value.failureDescription }.get()
    }

    func write(_ bytes: [UInt8]) async throws {
        try await self.channel.writeAndFlush(self.channel.allocator.buffer(bytes: bytes))
    }

    /// The next reply; fails after `timeout` (and closes the connection, which is then unusable).
    func reply(timeout: Duration) async throws -> SMTPReply {
        let promise = self.channel.eventLoop.makePromise(of: SMTPReply.self)
        let handler = self.handler
        let eventLoop = self.channel.eventLoop
        eventLoop.execute {
            handler.value.next(promise, timeout: timeout, eventLoop: eventLoop)
        }
        return try await promise.futureResult.get()
    }

    func close() async {
        try? await self.channel.close()
    }
}

/// Turns lines into replies and hands them out in order, on the channel's event loop.
final class SMTPReplyHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var lines: [String] = []
    private var code = 0
    private var ready: CircularBuffer<Result<SMTPReply, any Error>> = []
    private var waiting: CircularBuffer<(promise: EventLoopPromise<SMTPReply>, timeout: Scheduled<Void>)> = []
    private var failure: (any Error)?
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func next(_ promise: EventLoopPromise<SMTPReply>, timeout: Duration, eventLoop: any EventLoop) {
        if let result = self.ready.popFirst() {
            promise.completeWith(result)
        } else if let failure = self.failure {
            promise.fail(failure)
        } else {
            // Runs on the event loop, as this handler does.
            let handler = NIOLoopBound(self, eventLoop: eventLoop)
            let scheduled = eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)) {
                handler.value.fail(SMTPConnectionError.timeout(timeout))
                handler.value.context?.close(promise: nil)
            }
            self.waiting.append((promise, scheduled))
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        guard let line = SMTPReplyLine(parsing: Array(buffer.readableBytesView)) else {
            self.fail(SMTPConnectionError.malformedReply(String(decoding: buffer.readableBytesView, as: UTF8.self)))
            context.close(promise: nil)
            return
        }
        self.lines.append(line.text)
        self.code = line.code
        if line.isLast {
            self.complete(.success(SMTPReply(code: code, lines: self.lines)))
            self.lines = []
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.fail(SMTPConnectionError.closed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.fail(error)
        context.close(promise: nil)
    }

    var failureDescription: String? {
        self.failure.map { SMTPTransport.describe($0) }
    }

    private func complete(_ result: Result<SMTPReply, any Error>) {
        if let (promise, timeout) = self.waiting.popFirst() {
            timeout.cancel()
            promise.completeWith(result)
        } else {
            self.ready.append(result)
        }
    }

    private func fail(_ error: any Error) {
        if self.failure == nil { self.failure = error }
        while let (promise, timeout) = self.waiting.popFirst() {
            timeout.cancel()
            promise.fail(error)
        }
    }
}

/// Splits the server's bytes into lines (without CR LF); a line longer than RFC 5321's 512 octets
/// by far is an error rather than a reason to buffer without end.
struct SMTPLineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    static let maximumLength = 8192

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > Self.maximumLength {
                throw SMTPConnectionError.malformedReply("a line longer than \(Self.maximumLength) bytes")
            }
            return .needMoreData
        }
        let length = newline - buffer.readerIndex
        var line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: 1)
        if line.readableBytesView.last == UInt8(ascii: "\r") {
            line = line.getSlice(at: line.readerIndex, length: line.readableBytes - 1)!
        }
        context.fireChannelRead(Self.wrapInboundOut(line))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try self.decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

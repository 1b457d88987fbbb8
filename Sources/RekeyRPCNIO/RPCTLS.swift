import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import NIOTLS
import RekeyInput
import RekeyRPC

/// Mutual TLS for RPC connections: TLS 1.3 only, both sides present a certificate chaining to the
/// deployment's CA, and each certificate names its workload as a SPIFFE ID
/// (`spiffe://<trust domain>/<workload>`) in a URI subject alternative name. No ALPN.
///
/// The files are read again when they change (``reloadIfChanged()``, called on a timer and on
/// SIGHUP): new connections use the new certificate; connections already open keep theirs, so no
/// call in flight is dropped.
package final class RPCTLS: Sendable {
    package struct Files: Sendable, Equatable {
        package var ca: String
        package var certificate: String
        package var key: String

        package init(ca: String, certificate: String, key: String) {
            self.ca = ca
            self.certificate = certificate
            self.key = key
        }
    }

    package struct Failure: Error, CustomStringConvertible {
        package var description: String
        package init(_ description: String) { self.description = description }
    }

    /// What was loaded from the files at one time.
    private struct Loaded {
        var server: NIOSSLContext
        var client: NIOSSLContext
        var workload: String
        var notValidAfter: Date
        var stamp: [FileStamp]
    }

    private struct FileStamp: Equatable {
        var modified: Date
        var size: Int
        var inode: Int
    }

    package let files: Files
    package let trustDomain: String
    private let loaded: NIOLockedValueBox<Loaded>

    /// Loads the files; throws, naming the file, when one cannot be used.
    package init(files: Files, trustDomain: String) throws {
        guard SPIFFEID.validTrustDomain(trustDomain) else {
            throw Failure("trust domain `\(trustDomain.prefix(80))` must be 1-255 of a-z, 0-9, '.', '-' and '_'")
        }
        self.files = files
        self.trustDomain = trustDomain
        self.loaded = NIOLockedValueBox(try Self.load(files, trustDomain: trustDomain))
    }

    /// For new server connections: our certificate, and a client certificate required.
    package var serverContext: NIOSSLContext { self.loaded.withLockedValue(\.server) }
    /// For new client connections: our certificate, and the server's checked against the CA.
    package var clientContext: NIOSSLContext { self.loaded.withLockedValue(\.client) }
    /// The workload our own certificate names (`gateway`, `directory`, …).
    package var workload: String { self.loaded.withLockedValue(\.workload) }
    /// When our own certificate expires.
    package var notValidAfter: Date { self.loaded.withLockedValue(\.notValidAfter) }

    /// Loads the files again if any changed since the last load (modification time, size or
    /// inode, so an atomic rename counts), or always with `force`. Returns whether it did. On an
    /// error the contexts in use stay as they were.
    @discardableResult
    package func reloadIfChanged(force: Bool = false) throws -> Bool {
        let stamp = try Self.stamp(self.files)
        guard force || stamp != self.loaded.withLockedValue(\.stamp) else { return false }
        let fresh = try Self.load(self.files, trustDomain: self.trustDomain)
        self.loaded.withLockedValue { $0 = fresh }
        return true
    }

    private static func stamp(_ files: Files) throws -> [FileStamp] {
        try [files.ca, files.certificate, files.key].map { path in
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else {
                throw Failure("cannot read \(path)")
            }
            // Said before the parsers run: they would call an unreadable key "not a PEM key".
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw Failure("cannot read \(path): permission denied to this process (uid \(getuid())); give that user read access")
            }
            return FileStamp(
                modified: attributes[.modificationDate] as? Date ?? .distantPast,
                size: (attributes[.size] as? NSNumber)?.intValue ?? 0,
                inode: (attributes[.systemFileNumber] as? NSNumber)?.intValue ?? 0
            )
        }
    }

    private static func load(_ files: Files, trustDomain: String) throws -> Loaded {
        let stamp = try Self.stamp(files)
        let roots: [NIOSSLCertificate]
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            roots = try NIOSSLCertificate.fromPEMFile(files.ca)
        } catch {
            throw Failure("tls_ca \(files.ca) holds no PEM certificate")
        }
        do {
            chain = try NIOSSLCertificate.fromPEMFile(files.certificate)
        } catch {
            throw Failure("tls_cert \(files.certificate) holds no PEM certificate")
        }
        do {
            key = try NIOSSLPrivateKey(file: files.key, format: .pem)
        } catch {
            throw Failure("tls_key \(files.key) is not an unencrypted PEM private key")
        }
        guard !roots.isEmpty, let leaf = chain.first else {
            throw Failure("tls_ca and tls_cert must each hold at least one certificate")
        }
        guard let workload = Self.workload(of: leaf, trustDomain: trustDomain) else {
            let names = Self.uris(of: leaf)
            throw Failure(
                "tls_cert \(files.certificate) names no workload in trust domain `\(trustDomain)` (a URI spiffe://\(trustDomain)/<workload>; it has \(names.isEmpty ? "no URI" : names.joined(separator: ", ")))"
            )
        }
        var server = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        server.minimumTLSVersion = .tlsv13
        server.certificateVerification = .noHostnameVerification
        server.trustRoots = .certificates(roots)
        var client = TLSConfiguration.makeClientConfiguration()
        client.minimumTLSVersion = .tlsv13
        // The server's name is its SPIFFE ID, checked after the handshake (PeerIdentityHandler).
        client.certificateVerification = .noHostnameVerification
        client.trustRoots = .certificates(roots)
        client.certificateChain = chain.map { .certificate($0) }
        client.privateKey = .privateKey(key)
        let serverContext: NIOSSLContext
        let clientContext: NIOSSLContext
        do {
            serverContext = try NIOSSLContext(configuration: server)
            clientContext = try NIOSSLContext(configuration: client)
        } catch {
            throw Failure("tls_key \(files.key) does not belong to the certificate in tls_cert \(files.certificate), or a file is unusable")
        }
        return Loaded(
            server: serverContext, client: clientContext, workload: workload,
            notValidAfter: Date(timeIntervalSince1970: TimeInterval(leaf.notValidAfter)), stamp: stamp
        )
    }

    static func uris(of certificate: NIOSSLCertificate) -> [String] {
        certificate._subjectAlternativeNames().compactMap { name in
            guard name.nameType == .uri else { return nil }
            return name.contents.withUnsafeBufferPointer { String(decoding: $0, as: UTF8.self) }
        }
    }

    /// The workload a certificate names in `trustDomain`: the one path segment of its
    /// `spiffe://<trustDomain>/<workload>` URI; nil without exactly one such URI.
    package static func workload(of certificate: NIOSSLCertificate, trustDomain: String) -> String? {
        let workloads = Self.uris(of: certificate).compactMap { SPIFFEID.workload(of: $0, trustDomain: trustDomain) }
        return workloads.count == 1 ? workloads[0] : nil
    }
}

/// After the TLS handshake, reads the peer's workload from its certificate; a client also checks
/// that it is the service it meant to call. `verified` completes with the workload, or fails
/// (the connection is then closed).
final class PeerIdentityHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let trustDomain: String
    /// Clients: the workload the server must be.
    private let expected: String?
    let verified: EventLoopPromise<String>
    /// The workload, once known; read by the connection's handler on the same event loop.
    private(set) var workload: String?
    /// Whether `verified` is completed (a promise must be completed exactly once).
    private var settled = false
    private let onFailure: @Sendable (String) -> Void
    private let handshakeTimeout: Duration
    private var timer: Scheduled<Void>?

    init(
        trustDomain: String, expected: String?, eventLoop: any EventLoop, handshakeTimeout: Duration,
        onFailure: @escaping @Sendable (String) -> Void
    ) {
        self.trustDomain = trustDomain
        self.expected = expected
        self.verified = eventLoop.makePromise(of: String.self)
        self.handshakeTimeout = handshakeTimeout
        self.onFailure = onFailure
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // A peer that connects and never finishes the handshake does not hold the connection.
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: self.handshakeTimeout.timeAmount) {
            let (handler, context) = loopBound.value
            handler.fail(context: context, "the TLS handshake did not finish within \(handler.handshakeTimeout)")
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        // A connection that never came up (refused) ends here without channelInactive.
        if !self.settled {
            self.settled = true
            self.verified.fail(RPCTLS.Failure("the connection ended before the TLS handshake"))
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            let certificate = try? context.pipeline.syncOperations.handler(type: NIOSSLHandler.self).peerCertificate
            let workload = certificate.flatMap { RPCTLS.workload(of: $0, trustDomain: self.trustDomain) }
            self.timer?.cancel()
            if let workload, self.expected == nil || self.expected == workload {
                self.workload = workload
                if !self.settled {
                    self.settled = true
                    self.verified.succeed(workload)
                }
            } else {
                let named = certificate.map { RPCTLS.uris(of: $0) } ?? []
                let why = self.expected.map { expected in
                    "the peer is not \(expected): its certificate names \(named.isEmpty ? "no SPIFFE ID" : named.joined(separator: ", "))"
                } ?? "the peer's certificate names no workload in trust domain `\(self.trustDomain)` (\(named.isEmpty ? "no URI" : named.joined(separator: ", ")))"
                self.fail(context: context, why)
                return
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !self.settled {
            // During the handshake: the connection cannot be used. After it, the connection's
            // own handler deals with errors.
            self.fail(context: context, Self.describe(error))
        }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !self.settled {
            self.settled = true
            self.timer?.cancel()
            self.verified.fail(RPCTLS.Failure("the connection closed during the TLS handshake"))
        }
        context.fireChannelInactive()
    }

    private func fail(context: ChannelHandlerContext, _ why: String) {
        self.timer?.cancel()
        guard !self.settled else { return }
        self.settled = true
        self.onFailure(why)
        self.verified.fail(RPCTLS.Failure(why))
        context.close(promise: nil)
    }

    /// A TLS failure in words, without the TLS library's internals.
    static func describe(_ error: any Error) -> String {
        let text = "\(error)"
        if text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("certificate verify failed") {
            // The library does not say which: both are what an operator checks first.
            return "the peer's certificate does not chain to our CA (tls_ca), or has expired (or is not valid yet)"
        }
        if text.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") || text.contains("CERTIFICATE_REQUIRED") {
            return "the peer presented no certificate"
        }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("HTTP_REQUEST") || text.contains("UNKNOWN_PROTOCOL") || text.contains("NO_SHARED_CIPHER") {
            return "the peer does not speak TLS 1.3 (a plaintext client, or tls = off on its side)"
        }
        if text.contains("UNSUPPORTED_PROTOCOL") || text.contains("TLSV1_ALERT_PROTOCOL_VERSION") {
            return "the peer does not speak TLS 1.3"
        }
        if text.contains("uncleanShutdown") || text.contains("eof") {
            return "the peer closed the connection during the TLS handshake"
        }
        if text.contains("ALERT") {
            return "the peer refused the TLS handshake (our certificate is not trusted there, or has expired)"
        }
        return "the TLS handshake failed"
    }
}

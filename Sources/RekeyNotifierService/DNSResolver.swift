import Foundation
import NIOCore
import NIOPosix

/// Where the domain check gets DNS records: ``DNSResolver`` asks a server; tests of the
/// gateway in one process answer from a table.
package protocol DNSLookup: Sendable {
    func lookup(_ name: String, _ type: DNSResolver.RecordType) async throws -> DNSResolver.Lookup
    /// The server asked, for reports: `host:port`.
    var server: String { get }
}

extension DNSLookup {
    /// The TXT records of `name` (each the concatenation of its strings); none for NXDOMAIN.
    package func txt(_ name: String) async throws -> [String] {
        guard case .records(let records) = try await self.lookup(name, .txt) else { return [] }
        return records.compactMap { if case .txt(let text) = $0 { text } else { nil } }
    }
}

/// A small stub resolver (RFC 1035) for the sending-domain check: asks one recursive server
/// (`dns_server`) for A, AAAA, MX and TXT records, over UDP with EDNS0 and again over TCP when the
/// answer was truncated. Every length in a reply is checked before it is read: a reply is data
/// from the network, and a bad one is an error, never a crash.
package struct DNSResolver: DNSLookup {
    package enum RecordType: UInt16, Sendable {
        case a = 1
        case cname = 5
        case mx = 15
        case txt = 16
        case aaaa = 28
    }

    package enum RecordData: Sendable, Equatable {
        case address([UInt8])
        case mx(preference: Int, exchange: String)
        case txt(String)
        case name(String)
    }

    /// What the server said about a name and type.
    package enum Lookup: Sendable, Equatable {
        /// The records of the type asked for (empty: the name exists, without such records).
        case records([RecordData])
        /// NXDOMAIN: the name does not exist.
        case noSuchName
    }

    package struct Failure: Error, CustomStringConvertible, Sendable {
        package var description: String
    }

    package var host: String
    package var port: Int
    package var timeout: Duration

    package init(host: String, port: Int = 53, timeout: Duration = .seconds(3)) {
        self.host = host
        self.port = port
        self.timeout = timeout
    }

    /// The first `nameserver` of /etc/resolv.conf, or 127.0.0.1.
    package static func systemServer(resolvConf: String = "/etc/resolv.conf") -> String {
        let text = (try? String(contentsOfFile: resolvConf, encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if words.count >= 2, words[0] == "nameserver" { return String(words[1]) }
        }
        return "127.0.0.1"
    }

    package func lookup(_ name: String, _ type: RecordType) async throws -> Lookup {
        let id = UInt16.random(in: 0...UInt16.max)
        let query = try Self.query(id: id, name: name, type: type)
        var reply = try await self.exchange(query, tcp: false)
        var parsed = try Self.parse(reply, id: id, type: type)
        if parsed.truncated {
            reply = try await self.exchange(query, tcp: true)
            parsed = try Self.parse(reply, id: id, type: type)
        }
        return parsed.lookup
    }

    package var server: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }

    // MARK: Wire format

    static func query(id: UInt16, name: String, type: RecordType) throws -> [UInt8] {
        var bytes: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]
        let labels = name.hasSuffix(".") ? String(name.dropLast()) : name
        for label in labels.split(separator: ".", omittingEmptySubsequences: false) {
            let utf8 = Array(label.utf8)
            guard (1...63).contains(utf8.count), utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw Failure(description: "`\(name)` is not a domain name that can be looked up")
            }
            bytes.append(UInt8(utf8.count))
            bytes += utf8
        }
        bytes.append(0)
        guard bytes.count - 12 <= 255 else { throw Failure(description: "`\(name)` is longer than a domain name may be") }
        bytes += [UInt8(type.rawValue >> 8), UInt8(type.rawValue & 0xFF), 0, 1]
        // EDNS0 (RFC 6891): answers of up to 4096 bytes over UDP.
        bytes += [0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]
        return bytes
    }

    static func parse(_ reply: [UInt8], id: UInt16, type: RecordType) throws -> (lookup: Lookup, truncated: Bool) {
        var reader = Reader(bytes: reply)
        let replyID = try reader.u16()
        let flags = try reader.u16()
        guard replyID == id, flags & 0x8000 != 0 else { throw Failure(description: "the DNS server's reply does not answer our query") }
        let questions = try reader.u16()
        let answers = try reader.u16()
        _ = try reader.u16()
        _ = try reader.u16()
        if flags & 0x0200 != 0 { return (.records([]), true) }
        switch flags & 0x000F {
        case 0: break
        case 3: return (.noSuchName, false)
        case 2: throw Failure(description: "the DNS server failed to answer (SERVFAIL)")
        case 5: throw Failure(description: "the DNS server refused the query (REFUSED)")
        case let code: throw Failure(description: "the DNS server answered with error code \(code)")
        }
        for _ in 0..<questions {
            _ = try reader.name()
            try reader.skip(4)
        }
        var records: [RecordData] = []
        for _ in 0..<answers {
            _ = try reader.name()
            let recordType = try reader.u16()
            try reader.skip(6)
            let length = Int(try reader.u16())
            let end = reader.offset + length
            guard end <= reply.count else { throw Failure(description: "the DNS reply is cut short") }
            defer { reader.offset = end }
            guard recordType == type.rawValue else { continue }
            switch type {
            case .a, .aaaa:
                guard length == (type == .a ? 4 : 16) else { throw Failure(description: "a DNS address record has the wrong length") }
                records.append(.address(Array(reply[reader.offset..<end])))
            case .mx:
                let preference = Int(try reader.u16())
                records.append(.mx(preference: preference, exchange: try reader.name()))
            case .cname:
                records.append(.name(try reader.name()))
            case .txt:
                var text: [UInt8] = []
                while reader.offset < end {
                    let count = Int(try reader.u8())
                    guard reader.offset + count <= end else { throw Failure(description: "a DNS TXT record is cut short") }
                    text += reply[reader.offset..<(reader.offset + count)]
                    reader.offset += count
                }
                records.append(.txt(String(decoding: text, as: UTF8.self)))
            }
        }
        return (.records(records), false)
    }

    struct Reader {
        let bytes: [UInt8]
        var offset = 0

        mutating func u8() throws -> UInt8 {
            guard self.offset < self.bytes.count else { throw Failure(description: "the DNS reply is cut short") }
            defer { self.offset += 1 }
            return self.bytes[self.offset]
        }

        mutating func u16() throws -> UInt16 {
            UInt16(try self.u8()) << 8 | UInt16(try self.u8())
        }

        mutating func skip(_ count: Int) throws {
            guard self.offset + count <= self.bytes.count else { throw Failure(description: "the DNS reply is cut short") }
            self.offset += count
        }

        /// A name, following compression pointers (at most 32 of them, so a loop ends).
        mutating func name() throws -> String {
            var labels: [String] = []
            var position = self.offset
            var jumped = false
            var jumps = 0
            var length = 0
            while true {
                guard position < self.bytes.count else { throw Failure(description: "the DNS reply is cut short") }
                let count = Int(self.bytes[position])
                if count & 0xC0 == 0xC0 {
                    guard position + 1 < self.bytes.count, jumps < 32 else { throw Failure(description: "a DNS name in the reply is malformed") }
                    if !jumped { self.offset = position + 2 }
                    jumped = true
                    jumps += 1
                    position = (count & 0x3F) << 8 | Int(self.bytes[position + 1])
                    continue
                }
                guard count & 0xC0 == 0 else { throw Failure(description: "a DNS name in the reply is malformed") }
                position += 1
                if count == 0 { break }
                length += count + 1
                guard position + count <= self.bytes.count, length <= 255 else { throw Failure(description: "a DNS name in the reply is malformed") }
                labels.append(String(decoding: self.bytes[position..<(position + count)], as: UTF8.self))
                position += count
            }
            if !jumped { self.offset = position }
            return labels.joined(separator: ".")
        }
    }

    // MARK: Transport

    private func exchange(_ query: [UInt8], tcp: Bool) async throws -> [UInt8] {
        // One event loop for the channel, the promise and the timeout, so the collector that
        // completes the promise is only ever touched there.
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let promise = loop.makePromise(of: [UInt8].self)
        let stream = ReplyCollector<ByteBuffer>(promise: promise, framed: true)
        let datagrams = ReplyCollector<AddressedEnvelope<ByteBuffer>>(promise: promise, framed: false)
        let finish: @Sendable (Result<[UInt8], Error>) -> Void = { tcp ? stream.finish($0) : datagrams.finish($0) }
        let address: SocketAddress
        do {
            address = try SocketAddress.makeAddressResolvingHost(self.host, port: self.port)
        } catch {
            promise.succeed([])
            throw Failure(description: "dns_server `\(self.host)` is not an address")
        }
        let channel: Channel
        do {
            if tcp {
                channel = try await ClientBootstrap(group: loop)
                    .connectTimeout(.init(self.timeout))
                    .channelInitializer { $0.pipeline.addHandler(stream) }
                    .connect(to: address).get()
                var buffer = channel.allocator.buffer(capacity: query.count + 2)
                buffer.writeInteger(UInt16(query.count))
                buffer.writeBytes(query)
                try await channel.writeAndFlush(buffer).get()
            } else {
                channel = try await DatagramBootstrap(group: loop)
                    .channelInitializer { $0.pipeline.addHandler(datagrams) }
                    .bind(host: address.protocol == .inet6 ? "::" : "0.0.0.0", port: 0).get()
                let envelope = AddressedEnvelope(remoteAddress: address, data: channel.allocator.buffer(bytes: query))
                try await channel.writeAndFlush(envelope).get()
            }
        } catch {
            loop.execute { finish(.failure(error)) }
            throw Failure(description: "cannot reach the DNS server \(self.host):\(self.port) (\(error))")
        }
        let failure = Failure(description: "the DNS server \(self.host):\(self.port) did not answer within \(self.timeout)")
        let timeout = loop.scheduleTask(in: .init(self.timeout)) {
            finish(.failure(failure))
        }
        defer {
            timeout.cancel()
            channel.close(promise: nil)
        }
        return try await promise.futureResult.get()
    }
}

/// Completes the promise with the first reply: a datagram, or a length-prefixed TCP message.
private final class ReplyCollector<InboundIn>: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: used only on its channel's event loop.

    let promise: EventLoopPromise<[UInt8]>
    let framed: Bool
    var buffer: [UInt8] = []

    init(promise: EventLoopPromise<[UInt8]>, framed: Bool) {
        self.promise = promise
        self.framed = framed
    }

    var done = false

    func finish(_ result: Result<[UInt8], Error>) {
        guard !self.done else { return }
        self.done = true
        self.promise.completeWith(result)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let read = self.unwrapInboundIn(data)
        if self.framed, var bytes = read as? ByteBuffer {
            self.buffer += bytes.readBytes(length: bytes.readableBytes) ?? []
            guard self.buffer.count >= 2 else { return }
            let length = Int(self.buffer[0]) << 8 | Int(self.buffer[1])
            if self.buffer.count >= length + 2 {
                self.finish(.success(Array(self.buffer[2..<(length + 2)])))
            }
        } else if var envelope = read as? AddressedEnvelope<ByteBuffer> {
            self.finish(.success(envelope.data.readBytes(length: envelope.data.readableBytes) ?? []))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.finish(.failure(DNSResolver.Failure(description: "the DNS server closed the connection before answering")))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.finish(.failure(error))
        context.close(promise: nil)
    }
}

import Foundation
import RekeyCrypto

/// DKIM signing (RFC 6376), relaxed/relaxed, with `rsa-sha256` or `ed25519-sha256` (RFC 8463).
///
/// The notifier signs each message just before it is handed to the relay, so a key rotated on disk
/// and reloaded applies to every later attempt, and the signature's time is the sending time. With
/// several keys (an RSA and an Ed25519 one, as RFC 8463 suggests while receivers adopt Ed25519)
/// each adds its own `DKIM-Signature`.
package struct DKIMSigner: Sendable {
    package struct Key: Sendable {
        package var selector: String
        package var key: SigningKey

        package init(selector: String, key: SigningKey) {
            self.selector = selector
            self.key = key
        }

        package var algorithmTag: String {
            self.key.algorithm == .ed25519 ? "ed25519-sha256" : "rsa-sha256"
        }
    }

    /// The signing domain (`d=`), which DMARC wants aligned with the From domain.
    package var domain: String
    package var keys: [Key]

    /// The header fields signed, in this order. Names absent from a message still count (RFC 6376
    /// §5.4): listing From, To, Subject, Reply-To and Cc once more than they occur means that a
    /// field added on the way (a second From, a Reply-To pointing elsewhere) breaks the signature.
    package static let signedFields = [
        "from", "to", "subject", "date", "message-id", "mime-version", "content-type", "auto-submitted",
    ]
    static let oversignedFields: Set<String> = ["from", "to", "subject", "reply-to", "cc"]

    package init(domain: String, keys: [Key]) {
        self.domain = domain
        self.keys = keys
    }

    /// The DNS TXT record that publishes `key` (at `<selector>._domainkey.<domain>`).
    package static func dnsRecord(for key: SigningKey) throws(CryptoError) -> String {
        let kind = key.algorithm == .ed25519 ? "ed25519" : "rsa"
        return "v=DKIM1; k=\(kind); p=" + Data(try key.publicKeyForDNS()).base64EncodedString()
    }

    /// `message` (headers, a blank line, the body; CRLF line ends) with one `DKIM-Signature`
    /// field per key in front.
    package func sign(_ message: [UInt8], at time: Date) throws -> [UInt8] {
        guard let split = Self.headerEnd(message) else {
            throw NotifierError.invalidArgument("the message has no blank line between header and body")
        }
        let fields = Self.headerFields(Array(message[..<split.headerEnd]))
        let body = Array(message[split.bodyStart...])
        let bodyHash = Data(OpenSSL.sha256(Self.relaxedBody(body))).base64EncodedString()
        var signedNames: [String] = []
        var counts: [String: Int] = [:]
        for field in fields { counts[field.name.lowercased(), default: 0] += 1 }
        for name in Self.signedFields + ["reply-to", "cc"] {
            let present = counts[name, default: 0]
            let times = present + (Self.oversignedFields.contains(name) ? 1 : 0)
            signedNames += Array(repeating: name, count: times)
        }
        let headerData = Self.headerData(fields, names: signedNames)
        let timestamp = Int(time.timeIntervalSince1970)
        var output: [UInt8] = []
        for key in self.keys {
            // b= last and empty while signing; the signature is appended to it afterwards.
            let unsigned = "DKIM-Signature: v=1; a=\(key.algorithmTag); c=relaxed/relaxed;\r\n"
                + " d=\(self.domain); s=\(key.selector); t=\(timestamp);\r\n"
                + " h=\(Self.foldedList(signedNames));\r\n"
                + " bh=\(bodyHash);\r\n b="
            var data = headerData + Self.relaxedHeader(Array(unsigned.utf8))
            while let last = data.last, last == 0x20 || last == 0x09 { data.removeLast() }
            let signature: [UInt8]
            switch key.key.algorithm {
            case .rsa: signature = try key.key.sign(data)
            case .ed25519: signature = try key.key.sign(OpenSSL.sha256(data))
            }
            let encoded = Data(signature).base64EncodedString()
            var chunks: [Substring] = []
            var rest = Substring(encoded)
            while !rest.isEmpty {
                chunks.append(rest.prefix(72))
                rest = rest.dropFirst(72)
            }
            output += Array((unsigned + chunks.joined(separator: "\r\n ") + "\r\n").utf8)
        }
        return output + message
    }

    /// The signed fields' canonical form, each ending in CRLF, in the order of `names`; a name
    /// listed more than once takes its fields bottom-up, and one listed more often than it occurs
    /// adds nothing (RFC 6376 §5.4.2).
    package static func headerData(_ fields: [Field], names: [String]) -> [UInt8] {
        var used: [String: Int] = [:]
        var data: [UInt8] = []
        for name in names {
            let instances = fields.filter { $0.name.lowercased() == name }
            let index = used[name, default: 0]
            used[name] = index + 1
            guard index < instances.count else { continue }
            data += Self.relaxedHeader(instances[instances.count - 1 - index].raw) + [13, 10]
        }
        return data
    }

    /// `a:b:c`, broken into lines of about 70 characters after a colon (FWS is allowed there).
    static func foldedList(_ names: [String]) -> String {
        var lines: [String] = []
        var current = ""
        for name in names {
            if current.isEmpty {
                current = name
            } else if current.count + 1 + name.count > 66 {
                lines.append(current + ":")
                current = name
            } else {
                current += ":" + name
            }
        }
        lines.append(current)
        return lines.joined(separator: "\r\n ")
    }

    /// Where the header ends (before its last CRLF) and the body starts (after the blank line).
    package static func headerEnd(_ message: [UInt8]) -> (headerEnd: Int, bodyStart: Int)? {
        guard message.count >= 4 else { return nil }
        for index in 0...(message.count - 4)
        where message[index] == 13 && message[index + 1] == 10 && message[index + 2] == 13 && message[index + 3] == 10 {
            return (index + 2, index + 4)
        }
        return nil
    }

    package struct Field {
        package var name: String
        /// The whole field, folded lines included, without its final CRLF.
        package var raw: [UInt8]
    }

    /// The header's fields: a line starting with a space or tab continues the one before.
    package static func headerFields(_ header: [UInt8]) -> [Field] {
        var fields: [Field] = []
        for line in Self.lines(header) where !line.isEmpty {
            if line[0] == 0x20 || line[0] == 0x09, !fields.isEmpty {
                fields[fields.count - 1].raw += [13, 10] + line
            } else {
                let name = line.firstIndex(of: UInt8(ascii: ":")).map { Array(line[..<$0]) } ?? line
                fields.append(Field(name: String(decoding: name, as: UTF8.self).trimmingCharacters(in: .whitespaces), raw: line))
            }
        }
        return fields
    }

    /// The `relaxed` header canonicalization (RFC 6376 §3.4.2), without the final CRLF: the name in
    /// lower case, the value unfolded, runs of spaces and tabs as one space, none at either end.
    package static func relaxedHeader(_ field: [UInt8]) -> [UInt8] {
        guard let colon = field.firstIndex(of: UInt8(ascii: ":")) else { return field }
        var name = Array(field[..<colon])
        while let last = name.last, last == 0x20 || last == 0x09 { name.removeLast() }
        var value: [UInt8] = []
        var pendingSpace = false
        for byte in field[(colon + 1)...] where byte != 13 && byte != 10 {
            if byte == 0x20 || byte == 0x09 {
                pendingSpace = true
            } else {
                if pendingSpace && !value.isEmpty { value.append(0x20) }
                pendingSpace = false
                value.append(byte)
            }
        }
        return name.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 } + [UInt8(ascii: ":")] + value
    }

    /// The `relaxed` body canonicalization (RFC 6376 §3.4.4): spaces and tabs at line ends removed,
    /// runs of them inside a line as one space, empty lines at the end removed, and a non-empty
    /// body ending in CRLF.
    package static func relaxedBody(_ body: [UInt8]) -> [UInt8] {
        var lines = Self.lines(body).map { line -> [UInt8] in
            var out: [UInt8] = []
            var pendingSpace = false
            for byte in line {
                if byte == 0x20 || byte == 0x09 {
                    pendingSpace = true
                } else {
                    if pendingSpace { out.append(0x20) }
                    pendingSpace = false
                    out.append(byte)
                }
            }
            return out
        }
        while let last = lines.last, last.isEmpty { lines.removeLast() }
        return lines.flatMap { $0 + [13, 10] }
    }

    /// Lines split at CRLF (a final CRLF does not start another line).
    static func lines(_ bytes: [UInt8]) -> [[UInt8]] {
        var lines: [[UInt8]] = []
        var start = 0
        var index = 0
        while index < bytes.count {
            if bytes[index] == 13, index + 1 < bytes.count, bytes[index + 1] == 10 {
                lines.append(Array(bytes[start..<index]))
                index += 2
                start = index
            } else {
                index += 1
            }
        }
        if start < bytes.count { lines.append(Array(bytes[start...])) }
        return lines
    }
}

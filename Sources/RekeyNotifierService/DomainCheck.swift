import Foundation

/// Checks what receivers check before they trust a message from us: SPF of the envelope domain
/// (does it allow the relay?), the DKIM record of each signing key (present, and ours?), DMARC
/// (present, its policy, and whether From aligns with the DKIM `d=` or the SPF domain), and the MX
/// of the From domain. Each finding says what is wrong and what to publish or set to fix it.
///
/// The registered ("organizational") domain is approximated by the last two labels: without the
/// Public Suffix List, `mail.example.co.uk` and `example.co.uk` count as aligned with any
/// `co.uk` domain, which errs on the side of a warning too few, never a false alarm.
package struct DomainCheck: Sendable {
    package struct Finding: Sendable, Equatable, CustomStringConvertible {
        package enum Status: String, Sendable {
            case ok, warning, problem
        }

        /// `spf`, `dkim`, `dmarc`, `mx` or `template`.
        package var check: String
        package var status: Status
        /// What was found, in a sentence.
        package var summary: String
        /// What to publish or set; empty when nothing needs doing.
        package var fix: String = ""
        /// The record as it was found, when there was one.
        package var evidence: String = ""

        package var description: String { "\(self.check) \(self.status): \(self.summary)" }
    }

    package struct Configuration: Sendable {
        package var fromAddress: String
        /// The domain of MAIL FROM (where SPF is looked up, and where bounces go).
        package var envelopeDomain: String
        /// The relay's host (a name or an address); nil when mail is written to a folder.
        package var relayHost: String?
        package var dkim: DKIMSigner?
        /// The right-hand side of Message-ID headers.
        package var messageIDDomain: String

        package init(fromAddress: String, envelopeDomain: String, relayHost: String?, dkim: DKIMSigner?, messageIDDomain: String) {
            self.fromAddress = fromAddress
            self.envelopeDomain = envelopeDomain
            self.relayHost = relayHost
            self.dkim = dkim
            self.messageIDDomain = messageIDDomain
        }

        package var fromDomain: String { String(self.fromAddress.split(separator: "@").last ?? "").lowercased() }
    }

    package let resolver: any DNSLookup
    package let configuration: Configuration

    package init(resolver: any DNSLookup, configuration: Configuration) {
        self.resolver = resolver
        self.configuration = configuration
    }

    package func run() async -> [Finding] {
        // Side by side, so that a slow or silent DNS server costs one timeout, not one per check.
        async let spfCheck = self.checkSPF()
        async let dkim = self.checkDKIM()
        async let mx = self.checkMX()
        let spf = await spfCheck
        var findings = [spf.finding]
        findings += await dkim
        findings.append(await self.checkDMARC(spfPassed: spf.result == .pass))
        findings.append(await mx)
        if let messageID = Self.messageIDFinding(self.configuration.messageIDDomain) { findings.append(messageID) }
        return findings
    }

    /// The Message-ID domain, checked without DNS: an internal host name there tells every
    /// recipient about the network, and filters count it against the mail.
    package static func messageIDFinding(_ domain: String) -> Finding? {
        let lower = domain.lowercased()
        let internalSuffixes = [".local", ".lan", ".internal", ".localdomain", ".home", ".corp", ".intranet", ".localhost"]
        guard !lower.contains(".") || lower == "localhost" || internalSuffixes.contains(where: lower.hasSuffix) else { return nil }
        return Finding(
            check: "template", status: .warning,
            summary: "Message-ID headers end in @\(domain), an internal host name: it is shown to every recipient, and filters count it against the mail",
            fix: "set message_id_domain (or from_address) to your public mail domain"
        )
    }

    // MARK: SPF

    func relayAddresses() async -> (addresses: [[UInt8]], error: String?) {
        guard let host = self.configuration.relayHost else { return ([], nil) }
        if let literal = SPF.parseAddress(host) { return ([literal], nil) }
        do {
            var addresses: [[UInt8]] = []
            for type in [DNSResolver.RecordType.a, .aaaa] {
                if case .records(let records) = try await self.resolver.lookup(host, type) {
                    addresses += records.compactMap { if case .address(let bytes) = $0 { bytes } else { nil } }
                }
            }
            return (addresses, addresses.isEmpty ? "the relay's name \(host) has no address in DNS" : nil)
        } catch {
            return ([], "cannot look up the relay's address: \(error)")
        }
    }

    func checkSPF() async -> (finding: Finding, result: SPF.Result) {
        let domain = self.configuration.envelopeDomain
        let records: [String]
        do {
            records = try await self.resolver.txt(domain).filter(SPF.isRecord)
        } catch {
            return (Finding(check: "spf", status: .warning, summary: "cannot look up the SPF record of \(domain): \(error)"), .temperror)
        }
        let relay = await self.relayAddresses()
        let relayText = relay.addresses.map(SPF.format).joined(separator: ", ")
        let suggestion = relay.addresses.first.map { ($0.count == 4 ? "ip4:" : "ip6:") + SPF.format($0) }
            ?? self.configuration.relayHost.map { "a:\($0)" } ?? "ip4:<your relay's public address>"
        guard let record = records.first else {
            return (Finding(
                check: "spf", status: .problem,
                summary: "\(domain) (the envelope sender's domain) publishes no SPF record, so receivers cannot tell that the relay may send for it",
                fix: "publish TXT at \(domain): \"v=spf1 \(suggestion) -all\" (or include: your mail provider's SPF)"
            ), .none)
        }
        guard records.count == 1 else {
            return (Finding(
                check: "spf", status: .problem, summary: "\(domain) publishes \(records.count) SPF records; receivers treat that as an error (RFC 7208 §4.5)",
                fix: "merge them into one TXT record starting with v=spf1", evidence: records.joined(separator: " | ")
            ), .permerror)
        }
        guard self.configuration.relayHost != nil else {
            return (Finding(check: "spf", status: .ok, summary: "\(domain) publishes an SPF record (mail is written to a folder, so no relay to check against it)", evidence: record), .none)
        }
        guard let address = relay.addresses.first else {
            return (Finding(check: "spf", status: .warning, summary: "\(domain) publishes an SPF record, but \(relay.error ?? "the relay has no address")", evidence: record), .temperror)
        }
        let evaluator = SPF(resolver: self.resolver)
        let (result, why) = await evaluator.check(ip: address, domain: domain)
        let privateNote = SPF.isPrivate(address)
            ? " The relay is at a private address (\(relayText)): receivers see the public address it sends from, so check that one too." : ""
        switch result {
        case .pass:
            return (Finding(check: "spf", status: .ok, summary: "the SPF record of \(domain) allows the relay (\(relayText)).\(privateNote)", evidence: record), result)
        case .fail, .softfail:
            return (Finding(
                check: "spf", status: .problem,
                summary: "the SPF record of \(domain) does not allow the relay (\(relayText)): SPF \(result.rawValue)\(why.isEmpty ? "" : ", \(why)").\(privateNote)",
                fix: "add \(suggestion) to the record, before its all: \(SPF.adding(suggestion, to: record))", evidence: record
            ), result)
        case .neutral, .none:
            return (Finding(
                check: "spf", status: .warning,
                summary: "the SPF record of \(domain) says nothing about the relay (\(relayText)): SPF \(result.rawValue)\(why.isEmpty ? "" : ", \(why)").\(privateNote)",
                fix: "add \(suggestion) to the record: \(SPF.adding(suggestion, to: record))", evidence: record
            ), result)
        case .permerror:
            return (Finding(check: "spf", status: .problem, summary: "the SPF record of \(domain) is broken: \(why)", fix: "correct the record (RFC 7208)", evidence: record), result)
        case .temperror:
            return (Finding(check: "spf", status: .warning, summary: "the SPF record of \(domain) could not be evaluated: \(why)", evidence: record), result)
        }
    }

    // MARK: DKIM

    func checkDKIM() async -> [Finding] {
        guard let signer = self.configuration.dkim else {
            return [Finding(
                check: "dkim", status: .problem, summary: "mail is not DKIM-signed: many receivers file unsigned mail as spam, and DMARC can pass only through SPF",
                fix: "rekey-notifier dkim keygen --out dkim.pem --selector rekey --domain \(self.configuration.fromDomain), publish the record it prints, then set dkim_key and dkim_selector"
            )]
        }
        var findings: [Finding] = []
        for key in signer.keys {
            let name = "\(key.selector)._domainkey.\(signer.domain)"
            let expected = (try? DKIMSigner.dnsRecord(for: key.key)) ?? ""
            let records: [String]
            do {
                records = try await self.resolver.txt(name)
            } catch {
                findings.append(Finding(check: "dkim", status: .warning, summary: "cannot look up the DKIM record \(name): \(error)"))
                continue
            }
            guard let record = records.first(where: { $0.contains("p=") }) else {
                findings.append(Finding(
                    check: "dkim", status: .problem, summary: "no DKIM record at \(name): receivers cannot check the \(key.algorithmTag) signature",
                    fix: "publish TXT at \(name): \"\(expected)\""
                ))
                continue
            }
            let tags = Self.tags(record)
            let published = (tags["p"] ?? "").filter { !$0.isWhitespace }
            let ours = String(expected.split(separator: "p=").last ?? "")
            let kind = (tags["k"] ?? "rsa").lowercased()
            if published.isEmpty {
                findings.append(Finding(check: "dkim", status: .problem, summary: "the DKIM key at \(name) is revoked (empty p=)", fix: "publish TXT at \(name): \"\(expected)\"", evidence: record))
            } else if published != ours || kind != (key.key.algorithm == .ed25519 ? "ed25519" : "rsa") {
                findings.append(Finding(
                    check: "dkim", status: .problem, summary: "the DKIM record at \(name) is not the key the notifier signs with: every signature fails",
                    fix: "publish TXT at \(name): \"\(expected)\" (or set dkim_key to the key that record belongs to)", evidence: record
                ))
            } else {
                findings.append(Finding(check: "dkim", status: .ok, summary: "the DKIM record at \(name) matches the \(key.key.algorithm) key the notifier signs with", evidence: record))
            }
        }
        return findings
    }

    // MARK: DMARC

    func checkDMARC(spfPassed: Bool) async -> Finding {
        let from = self.configuration.fromDomain
        var record: String? = nil
        var at = "_dmarc.\(from)"
        do {
            record = try await self.resolver.txt(at).first(where: { $0.lowercased().hasPrefix("v=dmarc1") })
            let organizational = Self.organizationalDomain(from)
            if record == nil, organizational != from {
                at = "_dmarc.\(organizational)"
                record = try await self.resolver.txt(at).first(where: { $0.lowercased().hasPrefix("v=dmarc1") })
            }
        } catch {
            return Finding(check: "dmarc", status: .warning, summary: "cannot look up the DMARC record of \(from): \(error)")
        }
        guard let record else {
            return Finding(
                check: "dmarc", status: .problem,
                summary: "\(from) publishes no DMARC record: large mailbox providers (Gmail, Yahoo) expect one from senders and treat mail without it with suspicion",
                fix: "publish TXT at _dmarc.\(from): \"v=DMARC1; p=none; rua=mailto:dmarc-reports@\(from)\", then move to p=quarantine once reports look right"
            )
        }
        let tags = Self.tags(record)
        let policy = (tags["p"] ?? "none").lowercased()
        let dkimDomain = self.configuration.dkim?.domain
        let dkimAligned = dkimDomain.map { Self.aligned($0, from, strict: tags["adkim"]?.lowercased() == "s") } ?? false
        let spfAligned = spfPassed && Self.aligned(self.configuration.envelopeDomain, from, strict: tags["aspf"]?.lowercased() == "s")
        if dkimAligned || spfAligned {
            let through = [dkimAligned ? "DKIM (d=\(dkimDomain ?? ""))" : nil, spfAligned ? "SPF (\(self.configuration.envelopeDomain))" : nil].compactMap { $0 }
            return Finding(check: "dmarc", status: .ok, summary: "DMARC at \(at) (p=\(policy)) can pass: From \(from) is aligned through \(through.joined(separator: " and "))", evidence: record)
        }
        let consequence = policy == "reject" ? "receivers refuse the mail" : policy == "quarantine" ? "receivers put the mail in spam" : "receivers may treat the mail as suspicious"
        let why = dkimDomain == nil
            ? "mail is not DKIM-signed" : "the DKIM domain \(dkimDomain ?? "") is not aligned with \(from)"
        return Finding(
            check: "dmarc", status: .problem,
            summary: "DMARC fails for From \(from): \(why), and SPF \(spfPassed ? "passes for \(self.configuration.envelopeDomain), which is not aligned" : "does not pass"); with p=\(policy) \(consequence)",
            fix: "sign with dkim_domain = \(from) (or a domain under it) and publish its DKIM record",
            evidence: record
        )
    }

    // MARK: MX

    func checkMX() async -> Finding {
        let from = self.configuration.fromDomain
        do {
            switch try await self.resolver.lookup(from, .mx) {
            case .noSuchName:
                return Finding(
                    check: "mx", status: .problem, summary: "the From domain \(from) does not exist in DNS: receivers refuse mail from it",
                    fix: "set from_address to an address at a domain you own and publish"
                )
            case .records(let records):
                let exchanges = records.compactMap { if case .mx(let preference, let exchange) = $0 { (preference, exchange) } else { nil } }
                if exchanges.count == 1, exchanges[0].1.isEmpty || exchanges[0].1 == "." {
                    return Finding(
                        check: "mx", status: .warning, summary: "\(from) publishes a null MX (RFC 7505): it receives no mail, so replies and bounces to it are lost, and some receivers distrust such senders",
                        evidence: "0 ."
                    )
                }
                if !exchanges.isEmpty {
                    let list = exchanges.sorted { $0.0 < $1.0 }.map { "\($0.0) \($0.1)" }.joined(separator: ", ")
                    return Finding(check: "mx", status: .ok, summary: "\(from) receives mail (MX \(list))", evidence: list)
                }
                if case .records(let addresses) = try await self.resolver.lookup(from, .a), !addresses.isEmpty {
                    return Finding(check: "mx", status: .warning, summary: "\(from) has no MX record; mail to it goes to its address record", fix: "publish an MX record for \(from)")
                }
                return Finding(
                    check: "mx", status: .problem, summary: "\(from) has neither an MX nor an address record: replies bounce, and receivers that check the sender's domain refuse the mail",
                    fix: "publish an MX record for \(from)"
                )
            }
        } catch {
            return Finding(check: "mx", status: .warning, summary: "cannot look up the MX of \(from): \(error)")
        }
    }

    // MARK: Helpers

    /// `tag=value` pairs of a DKIM or DMARC record, names in lower case.
    static func tags(_ record: String) -> [String: String] {
        var tags: [String: String] = [:]
        for part in record.split(separator: ";") {
            guard let equals = part.firstIndex(of: "=") else { continue }
            tags[part[..<equals].trimmingCharacters(in: .whitespaces).lowercased()] = part[part.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        }
        return tags
    }

    static func organizationalDomain(_ domain: String) -> String {
        domain.lowercased().split(separator: ".").suffix(2).joined(separator: ".")
    }

    /// DMARC identifier alignment (RFC 7489 §3.1): the same domain when strict, the same
    /// registered domain when relaxed.
    static func aligned(_ domain: String, _ from: String, strict: Bool) -> Bool {
        let a = domain.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "."))
        let b = from.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "."))
        return strict ? a == b : Self.organizationalDomain(a) == Self.organizationalDomain(b)
    }
}

/// SPF evaluation (RFC 7208 `check_host`) of one address: `ip4`, `ip6`, `a`, `mx`, `include`,
/// `exists`, `all` and `redirect`, with the limit of 10 lookups. `ptr` never matches (it is
/// deprecated), and a record using macros is not expanded: it gives `neutral` with the reason.
final class SPF: @unchecked Sendable {
    // @unchecked: one evaluation at a time, by the task that made it.
    enum Result: String, Sendable {
        case pass, fail, softfail, neutral, none, permerror, temperror
    }

    let resolver: any DNSLookup
    var lookups = 0

    init(resolver: any DNSLookup) {
        self.resolver = resolver
    }

    static func isRecord(_ text: String) -> Bool {
        let lower = text.lowercased()
        return lower == "v=spf1" || lower.hasPrefix("v=spf1 ")
    }

    func check(ip: [UInt8], domain: String, depth: Int = 0) async -> (Result, String) {
        // The lookup limit ends any loop first; this only guards the stack.
        guard depth <= 11 else { return (.permerror, "includes nested too deep") }
        let records: [String]
        do {
            records = try await self.resolver.txt(domain).filter(Self.isRecord)
        } catch {
            return (.temperror, "\(error)")
        }
        guard records.count <= 1 else { return (.permerror, "\(domain) has \(records.count) SPF records") }
        guard let record = records.first else { return (.none, "\(domain) has no SPF record") }
        if record.contains("%{") { return (.neutral, "\(domain)'s record uses macros, which this check does not expand") }
        var redirect: String? = nil
        for term in record.split(separator: " ").dropFirst() where !term.isEmpty {
            var text = Substring(term)
            var qualifier = Result.pass
            switch text.first {
            case "-": qualifier = .fail
            case "~": qualifier = .softfail
            case "?": qualifier = .neutral
            default: break
            }
            if "+-~?".contains(text.first!) { text = text.dropFirst() }
            let lower = text.lowercased()
            if let equals = lower.firstIndex(of: "="), !lower[..<equals].contains(":") {
                if lower[..<equals] == "redirect" { redirect = String(lower[lower.index(after: equals)...]) }
                continue
            }
            let name = String(lower.prefix { $0 != ":" && $0 != "/" })
            let argument = text.dropFirst(name.count)
            let target = argument.hasPrefix(":") ? String(argument.dropFirst().prefix { $0 != "/" }) : domain
            let cidr = Self.cidrLengths(argument)
            let matched: Bool
            switch name {
            case "all":
                matched = true
            case "ip4", "ip6":
                guard argument.hasPrefix(":"), let network = Self.parseAddress(target), network.count == (name == "ip4" ? 4 : 16) else {
                    return (.permerror, "`\(term)` is not a valid \(name) term")
                }
                // ip4 and ip6 take one prefix length, their family's.
                let length = argument.split(separator: "/", maxSplits: 1).dropFirst().first.flatMap { Int($0) }
                guard length.map({ (0...(network.count * 8)).contains($0) }) ?? true else {
                    return (.permerror, "`\(term)` has a prefix length out of range")
                }
                matched = Self.contains(network: network, length: length ?? network.count * 8, ip)
            case "include", "a", "mx", "exists", "ptr":
                self.lookups += 1
                guard self.lookups <= 10 else { return (.permerror, "more than 10 DNS lookups (RFC 7208 §4.6.4)") }
                do {
                    switch name {
                    case "include":
                        let (result, why) = await self.check(ip: ip, domain: target, depth: depth + 1)
                        switch result {
                        case .pass: matched = true
                        case .fail, .softfail, .neutral: matched = false
                        case .temperror: return (.temperror, why)
                        case .none, .permerror: return (.permerror, "include:\(target): \(why)")
                        }
                    case "a":
                        matched = try await self.addresses(of: target, like: ip).contains { Self.contains(network: $0, length: ip.count == 4 ? cidr.v4 : cidr.v6, ip) }
                    case "mx":
                        guard case .records(let records) = try await self.resolver.lookup(target, .mx) else { matched = false; break }
                        var found = false
                        for case .mx(_, let exchange) in records.prefix(10) where !exchange.isEmpty {
                            if try await self.addresses(of: exchange, like: ip).contains(where: { Self.contains(network: $0, length: ip.count == 4 ? cidr.v4 : cidr.v6, ip) }) {
                                found = true
                                break
                            }
                        }
                        matched = found
                    case "exists":
                        guard case .records(let records) = try await self.resolver.lookup(target, .a) else { matched = false; break }
                        matched = !records.isEmpty
                    default:
                        matched = false
                    }
                } catch {
                    return (.temperror, "\(error)")
                }
            default:
                return (.permerror, "unknown mechanism `\(term)`")
            }
            if matched { return (qualifier, qualifier == .pass ? "" : "matched `\(term)`") }
        }
        if let redirect {
            self.lookups += 1
            guard self.lookups <= 10 else { return (.permerror, "more than 10 DNS lookups (RFC 7208 §4.6.4)") }
            let (result, why) = await self.check(ip: ip, domain: redirect, depth: depth + 1)
            return result == .none ? (.permerror, "redirect=\(redirect): \(why)") : (result, why)
        }
        return (.neutral, "no mechanism matched")
    }

    private func addresses(of name: String, like ip: [UInt8]) async throws -> [[UInt8]] {
        guard case .records(let records) = try await self.resolver.lookup(name, ip.count == 4 ? .a : .aaaa) else { return [] }
        return records.compactMap { if case .address(let bytes) = $0 { bytes } else { nil } }
    }

    /// `/24` or `/24//64` after a mechanism's domain: the IPv4 and IPv6 prefix lengths.
    static func cidrLengths(_ argument: Substring) -> (v4: Int, v6: Int) {
        guard let slash = argument.firstIndex(of: "/") else { return (32, 128) }
        let rest = argument[slash...]
        let parts = rest.components(separatedBy: "//")
        let v4 = parts[0].hasPrefix("/") ? Int(parts[0].dropFirst()) : nil
        let v6 = parts.count > 1 ? Int(parts[1]) : nil
        return (min(max(v4 ?? 32, 0), 32), min(max(v6 ?? 128, 0), 128))
    }

    static func contains(network: [UInt8], length: Int, _ ip: [UInt8]) -> Bool {
        guard network.count == ip.count else { return false }
        var bits = min(length, ip.count * 8)
        for index in 0..<ip.count where bits > 0 {
            let mask: UInt8 = bits >= 8 ? 0xFF : ~(0xFF >> UInt8(bits))
            if network[index] & mask != ip[index] & mask { return false }
            bits -= 8
        }
        return true
    }

    static func parseAddress(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    static func format(_ address: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        let family = address.count == 4 ? AF_INET : AF_INET6
        _ = address.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Loopback, RFC 1918, link-local, and IPv6 unique-local and loopback addresses.
    static func isPrivate(_ address: [UInt8]) -> Bool {
        if address.count == 4 {
            return address[0] == 127 || address[0] == 10 || (address[0] == 172 && address[1] & 0xF0 == 16)
                || (address[0] == 192 && address[1] == 168) || (address[0] == 169 && address[1] == 254)
        }
        return address == [UInt8](repeating: 0, count: 15) + [1] || address[0] & 0xFE == 0xFC || (address[0] == 0xFE && address[1] & 0xC0 == 0x80)
    }

    /// The record with `term` inserted before its `all` (or appended when it has none).
    static func adding(_ term: String, to record: String) -> String {
        var terms = record.split(separator: " ").map(String.init)
        if let all = terms.firstIndex(where: { $0.lowercased().hasSuffix("all") && $0.count <= 4 }) {
            terms.insert(term, at: all)
        } else {
            terms.append(term)
        }
        return terms.joined(separator: " ")
    }
}

/// Runs the domain check for the RPC, at most once a minute unless asked for a fresh one, and
/// one at a time: a burst of `rekey diagnose` calls shares one set of DNS lookups.
package actor DomainChecker {
    package struct Report: Sendable {
        package var findings: [DomainCheck.Finding]
        package var checkedAtUnixMs: Int64
        package var check: DomainCheck
    }

    package let check: DomainCheck
    /// The templates' hygiene, found once at start (templates do not change while it runs).
    package nonisolated let templateFindings: [DomainCheck.Finding]
    private var cached: (report: Report, at: ContinuousClock.Instant)?
    private var running: Task<Report, Never>?

    package init(check: DomainCheck, templates: MailTemplates) {
        self.check = check
        self.templateFindings = templates.hygieneFindings()
    }

    package func report(fresh: Bool) async -> Report {
        if !fresh, let cached = self.cached, ContinuousClock.now - cached.at < .seconds(60) {
            return cached.report
        }
        if let running = self.running { return await running.value }
        let check = self.check
        let templateFindings = self.templateFindings
        let task = Task {
            let findings = await check.run() + templateFindings
            return Report(findings: findings, checkedAtUnixMs: Int64(Date().timeIntervalSince1970 * 1000), check: check)
        }
        self.running = task
        let report = await task.value
        self.running = nil
        self.cached = (report, .now)
        return report
    }
}

import ArgumentParser
import Foundation
import RekeyCrypto
import RekeyNotifierService

/// `rekey-notifier dkim keygen|record`: a signing key and the DNS record that publishes it.
struct DKIMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dkim",
        abstract: "Make a DKIM key and print the DNS TXT record to publish for it.",
        subcommands: [Keygen.self, Record.self]
    )

    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a new private key (mode 600) and print its DNS record.",
            discussion: "Then set dkim_key to the file and dkim_selector to the selector, and publish the record before the notifier starts signing."
        )

        @Option(help: "rsa (2048-bit, understood by every receiver) or ed25519 (RFC 8463; sign with both while receivers adopt it).")
        var algorithm: String = "rsa"

        @Option(help: "RSA key size in bits, 2048 to 4096.")
        var bits: Int = 2048

        @Option(help: "The file to write; an existing file is never overwritten.")
        var out: String

        @Option(help: "The selector the record is published under.")
        var selector: String = "rekey"

        @Option(help: "The signing domain (the From address's domain, or one it is aligned with).")
        var domain: String = "example.com"

        func run() throws {
            let algorithm: SigningKey.Algorithm
            switch self.algorithm.lowercased() {
            case "rsa":
                guard (2048...4096).contains(self.bits) else { throw ValidationError("--bits must be from 2048 to 4096") }
                algorithm = .rsa(bits: self.bits)
            case "ed25519": algorithm = .ed25519
            default: throw ValidationError("--algorithm must be rsa or ed25519")
            }
            try DKIMCommand.checkNames(selector: self.selector, domain: self.domain)
            let key = try SigningKey.generate(algorithm)
            let pem = try key.privateKeyPEM()
            // O_EXCL: never replace a key that may be in use; 0600 from the first byte.
            let descriptor = open(self.out, O_WRONLY | O_CREAT | O_EXCL, 0o600)
            guard descriptor >= 0 else {
                throw CommandFailure("cannot create `\(self.out)`: \(String(cString: strerror(errno)))")
            }
            let written = pem.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            let synced = fsync(descriptor)
            close(descriptor)
            guard written == pem.count, synced == 0 else {
                unlink(self.out)
                throw CommandFailure("cannot write `\(self.out)`")
            }
            print("Wrote a new DKIM key (\(key.algorithm)) to \(self.out), readable by its owner only.")
            try DKIMCommand.printRecord(key: key, selector: self.selector, domain: self.domain)
        }
    }

    struct Record: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the DNS record for an existing key.")

        @Option(help: "The PEM private key file.")
        var key: String

        @Option(help: "The selector the record is published under.")
        var selector: String = "rekey"

        @Option(help: "The signing domain.")
        var domain: String = "example.com"

        func run() throws {
            try DKIMCommand.checkNames(selector: self.selector, domain: self.domain)
            guard let pem = FileManager.default.contents(atPath: self.key) else {
                throw CommandFailure("cannot read `\(self.key)`")
            }
            let key: SigningKey
            do {
                key = try SigningKey(pem: Array(pem))
            } catch {
                throw CommandFailure("`\(self.key)` is not an unencrypted PEM private key (RSA or Ed25519): \(error.detail)")
            }
            try DKIMCommand.printRecord(key: key, selector: self.selector, domain: self.domain)
        }
    }

    static func checkNames(selector: String, domain: String) throws {
        guard NotifierSettings.isDNSName(selector) else {
            throw ValidationError("--selector must be letters, digits and hyphens, such as rekey2026")
        }
        guard NotifierSettings.isDNSName(domain), domain.contains(".") else {
            throw ValidationError("--domain must be a domain name such as example.com")
        }
    }

    /// The record, as a value to paste and as a zone-file line (strings of at most 255 bytes).
    static func printRecord(key: SigningKey, selector: String, domain: String) throws {
        let value = try DKIMSigner.dnsRecord(for: key)
        var strings: [String] = []
        var rest = Substring(value)
        while !rest.isEmpty {
            strings.append("\"" + rest.prefix(250) + "\"")
            rest = rest.dropFirst(250)
        }
        print("""

        Publish this TXT record:
          name:  \(selector)._domainkey.\(domain)
          value: \(value)

        In a zone file:
          \(selector)._domainkey.\(domain). 3600 IN TXT ( \(strings.joined(separator: " ")) )

        Then: dkim_key = <this file>, dkim_selector = \(selector), dkim_domain = \(domain)
        """)
    }
}

/// A failure that is not a usage mistake: printed as `Error: …`, without the usage text.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) {
        self.description = description
    }
}

import ArgumentParser
import Foundation
import RekeyPKI

/// `rekey certs`: the deployment's own CA and the services' certificates for mutual TLS. Works
/// on files only (no gateway needed).
struct Certs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the deployment CA and the services' certificates for mutual TLS between them.",
        discussion: """
            rekey certs init --out certs          # ca.pem (give it to every service) and ca-key.pem (keep it safe)
            rekey certs issue gateway --ca certs --out certs   # gateway.pem and gateway-key.pem, valid 30 days
            Each certificate names its workload as spiffe://<trust domain>/<workload>; the services
            allow callers by that name. Issue again before expiry: services reload changed files.
            """,
        subcommands: [Init.self, Issue.self]
    )

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a deployment CA: ca.pem and ca-key.pem (mode 600) in --out.")

        @Option(help: "Folder to write to (created if missing).")
        var out: String

        @Option(help: "The SPIFFE trust domain the CA may issue names in.")
        var trustDomain: String = "rekey"

        @Option(help: "How many days the CA is valid.")
        var days: Int = 3650

        func run() throws {
            guard (1...36500).contains(self.days) else { throw ValidationError("--days must be 1-36500") }
            try Certs.reporting {
                if FileManager.default.fileExists(atPath: "\(self.out)/ca.pem") || FileManager.default.fileExists(atPath: "\(self.out)/ca-key.pem") {
                    throw Failure("\(self.out) already holds a CA: it is never replaced by accident (every certificate it issued would stop working); remove ca.pem and ca-key.pem first if you mean it")
                }
                let ca = try DeploymentPKI.makeCA(trustDomain: self.trustDomain, validity: TimeInterval(self.days) * 86_400)
                try Certs.write(ca.keyPEM, to: self.out, name: "ca-key.pem", mode: 0o600)
                try Certs.write(ca.certificatePEM, to: self.out, name: "ca.pem", mode: 0o644)
                print("wrote \(self.out)/ca.pem (give it to every service as tls_ca) and \(self.out)/ca-key.pem (keep it off the service hosts)")
                print("trust domain: \(self.trustDomain); valid until \(Certs.format(ca.notValidAfter))")
            }
        }
    }

    struct Issue: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a certificate for a workload (gateway, directory, reset-token, notifier): WORKLOAD.pem and WORKLOAD-key.pem in --out."
        )

        @Argument(help: "The workload the certificate names.")
        var workload: String

        @Option(help: "Folder holding ca.pem and ca-key.pem (from `rekey certs init`).")
        var ca: String

        @Option(help: "Folder to write to (created if missing).")
        var out: String

        @Option(help: "How many days the certificate is valid (short-lived: issue again before it ends).")
        var days: Int = 30

        @Option(help: "A DNS name to add (for clients that check host names); repeatable.")
        var dns: [String] = []

        @Option(help: "An IP address to add (for clients that check host names); repeatable.")
        var ip: [String] = []

        @Flag(help: "Replace existing files.")
        var force = false

        @Option(help: "Only issue when the existing certificate is missing, unreadable or ends within this many days (implies --force).")
        var renewWithin: Int?

        func run() throws {
            guard (1...3650).contains(self.days) else { throw ValidationError("--days must be 1-3650") }
            if let renewWithin = self.renewWithin {
                guard (0...3650).contains(renewWithin) else { throw ValidationError("--renew-within must be 0-3650") }
            }
            try Certs.reporting {
                if let renewWithin = self.renewWithin {
                    let path = "\(self.out)/\(self.workload).pem"
                    if let text = try? Certs.read(path), let end = DeploymentPKI.notValidAfter(certificatePEM: text),
                       end > Date().addingTimeInterval(TimeInterval(renewWithin) * 86_400) {
                        print("\(path) is valid until \(Certs.format(end)): kept")
                        return
                    }
                }
                let issued = try DeploymentPKI.issue(
                    workload: self.workload, caCertificatePEM: try Certs.read("\(self.ca)/ca.pem"), caKeyPEM: try Certs.read("\(self.ca)/ca-key.pem"),
                    validity: TimeInterval(self.days) * 86_400, dnsNames: self.dns, ipAddresses: self.ip
                )
                let replace = self.force || self.renewWithin != nil
                // The key first: a service reloading between the two renames fails to load the
                // mismatched pair and keeps what it has, then takes the new pair once the
                // certificate lands.
                try Certs.write(issued.keyPEM, to: self.out, name: "\(self.workload)-key.pem", mode: 0o600, replace: replace)
                try Certs.write(issued.certificatePEM, to: self.out, name: "\(self.workload).pem", mode: 0o644, replace: replace)
                print("wrote \(self.out)/\(self.workload).pem and \(self.out)/\(self.workload)-key.pem: tls_cert and tls_key of the \(self.workload)")
                print("valid until \(Certs.format(issued.notValidAfter))")
                if !DeploymentPKI.workloads.contains(self.workload) {
                    print("note: `\(self.workload)` is none of \(DeploymentPKI.workloads.joined(separator: ", ")): no service allows it any method")
                }
            }
        }
    }

    /// A failure of these commands, said as `rekey: …` with exit status 1 (no usage text).
    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    static func reporting(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let failure as Failure {
            FileHandle.standardError.write(Data("rekey: \(failure)\n".utf8))
            throw ExitCode(1)
        } catch let failure as DeploymentPKI.Failure {
            FileHandle.standardError.write(Data("rekey: \(failure)\n".utf8))
            throw ExitCode(1)
        }
    }

    static func read(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw Failure("cannot read \(path) (make the CA with `rekey certs init --out FOLDER`)")
        }
        return text
    }

    /// Writes `text` to `folder/name` with `mode`, through a temporary file and a rename (so a
    /// service reloading it never reads half a file); refuses to overwrite unless `replace`.
    static func write(_ text: String, to folder: String, name: String, mode: Int, replace: Bool = false) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = "\(folder)/\(name)"
        if !replace, FileManager.default.fileExists(atPath: path) {
            throw Failure("\(path) exists; give --force to replace it, or --renew-within DAYS to replace it only when it ends soon")
        }
        let temporary = "\(path).\(getpid()).tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: mode]) else {
            throw Failure("cannot write \(temporary)")
        }
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw Failure("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func format(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        return formatter.string(from: date)
    }
}

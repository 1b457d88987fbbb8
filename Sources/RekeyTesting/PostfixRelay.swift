import Foundation

/// A throw-away Postfix (Debian's `postfix`, 3.7) of its own on loopback: configuration, queue
/// and log in a temporary folder, started with `postfix -c`, stopped and removed with the
/// object. It relays for 127.0.0.0/8 to `nextHop`; mail for the domains in `transports` goes to
/// the given host:port instead (`transport_maps`), which is where the DSNs it writes itself go.
/// `files` are written into its configuration folder first (maps for `extraSettings` to name as
/// `regexp:$config_directory/…`), and `saslUsers` become Cyrus SASL users (sasldb, PLAIN and
/// LOGIN) for `smtpd_sasl_auth_enable`. Starting Postfix's master needs root; `sudo -n` is used
/// when the tests run as another user.
package final class PostfixRelay: @unchecked Sendable {
    // @unchecked: used only by the test that owns it.
    package let folder: TemporaryFolder
    package private(set) var port: Int
    package var config: String { self.folder.path + "/conf" }
    package var logFile: String { self.folder.path + "/maillog" }

    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package init(
        nextHop: String, transports: [String: String] = [:], extraSettings: [String] = [], files: [String: String] = [:],
        saslUsers: [String: String] = [:]
    ) throws {
        self.folder = try TemporaryFolder()
        self.port = try SMTPTestServer.freePort()
        let path = self.folder.path
        for sub in ["conf", "queue", "data"] {
            try FileManager.default.createDirectory(atPath: "\(path)/\(sub)", withIntermediateDirectories: true)
        }
        for (name, text) in files {
            try text.write(toFile: "\(path)/conf/\(name)", atomically: true, encoding: .utf8)
        }
        Self.deepenLogQueue()
        // Postfix keeps its data directory as its mail owner.
        try Self.asRoot("/bin/chown", ["postfix", "\(path)/data"])
        if !saslUsers.isEmpty {
            // Debian's Postfix reads Cyrus's smtpd.conf from $config_directory/sasl (not from
            // cyrus_sasl_config_path); smtpd, running as postfix, must read the sasldb, which
            // lives outside the configuration folder (Postfix wants that one owned by root).
            try FileManager.default.createDirectory(atPath: "\(path)/conf/sasl", withIntermediateDirectories: true)
            let database = "\(path)/data/sasldb2"
            try "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: \(database)\n"
                .write(toFile: "\(path)/conf/sasl/smtpd.conf", atomically: true, encoding: .utf8)
            for (user, password) in saslUsers.sorted(by: { $0.key < $1.key }) {
                try Self.asRoot("/usr/sbin/saslpasswd2", ["-p", "-c", "-f", database, "-u", Self.saslRealm, user], input: password)
            }
            try Self.asRoot("/bin/chown", ["postfix", database])
        }
        let transportMap = transports.map { "\($0.key)=smtp:\($0.value)" }.sorted().joined(separator: ", ")
        let main = [
            "compatibility_level = 3.6",
            "queue_directory = \(path)/queue", "data_directory = \(path)/data", "meta_directory = /etc/postfix",
            "mail_owner = postfix", "setgid_group = postdrop",
            "inet_interfaces = 127.0.0.1", "inet_protocols = ipv4",
            "myhostname = relay.rekey.test", "mydomain = rekey.test", "mydestination =",
            "mynetworks = 127.0.0.0/8", "smtpd_relay_restrictions = permit_mynetworks, reject",
            "relayhost = \(nextHop)",
            transportMap.isEmpty ? "" : "transport_maps = inline:{\(transportMap)}",
            "maillog_file = \(path)/maillog", "maillog_file_prefixes = \(path)",
            "smtp_dns_support_level = disabled", "smtp_tls_security_level = none", "smtpd_tls_security_level = none",
            "alias_maps =", "alias_database =", "local_recipient_maps =",
            "maximal_queue_lifetime = 1h", "bounce_queue_lifetime = 1h",
            "queue_run_delay = 1s", "minimal_backoff_time = 1s", "maximal_backoff_time = 2s",
        ] + (saslUsers.isEmpty ? [] : [
            "smtpd_sasl_auth_enable = yes", "smtpd_sasl_type = cyrus", "smtpd_sasl_local_domain = \(Self.saslRealm)",
            "smtpd_sasl_security_options = noanonymous",
        ]) + extraSettings
        try (main.joined(separator: "\n") + "\n").write(toFile: "\(path)/conf/main.cf", atomically: true, encoding: .utf8)
        // The port was free when picked, but another process may take it before Postfix binds
        // it: then pick another, a few times.
        for attempt in 1...3 {
            try self.writeMasterConfig()
            let (status, output) = try Self.postfix(["-c", self.config, "start"])
            if status == 0 { break }
            let log = self.log
            guard attempt < 3, log.contains("Address already in use") else {
                throw SMTPTestServer.StartError(message: "Postfix did not start (\(status)): \(output)\n\(log)")
            }
            self.port = try SMTPTestServer.freePort()
        }
        // Wait for its smtpd to listen.
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if Self.accepts(port: self.port) { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw SMTPTestServer.StartError(message: "Postfix does not listen on \(self.port):\n\(self.log)")
    }

    /// master.cf: smtpd on `port`, every service unchrooted (a chroot would need its own copies of
    /// system files).
    private func writeMasterConfig() throws {
        let services = [
            "127.0.0.1:\(self.port) inet n - n - - smtpd",
            "pickup unix n - n 60 1 pickup", "cleanup unix n - n - 0 cleanup", "qmgr unix n - n 300 1 qmgr",
            "tlsmgr unix - - n 1000? 1 tlsmgr", "rewrite unix - - n - - trivial-rewrite", "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce", "trace unix - - n - 0 bounce", "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush", "proxymap unix - - n - - proxymap", "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp", "showq unix n - n - - showq", "error unix - - n - - error", "retry unix - - n - - error",
            "discard unix - - n - - discard", "anvil unix - - n - 1 anvil", "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        try (services.joined(separator: "\n") + "\n").write(toFile: "\(self.config)/master.cf", atomically: true, encoding: .utf8)
    }

    /// Every Postfix process sends its log lines to postlogd over a unix datagram socket, and
    /// blocks when the socket's queue is full. Linux's default queue is 10 datagrams
    /// (`net.unix.max_dgram_qlen`; systemd raises it to 512 on every booted system, but a container
    /// has no systemd): while postlogd is being restarted, ten lines from busy smtpd processes fill
    /// it, and the master, blocked writing its own line, never restarts postlogd. One clean-clone run
    /// hung that way for good. This sets the queue to systemd's 512 when it is smaller, as root;
    /// where that is not allowed, Postfix runs with what there is.
    private static func deepenLogQueue() {
        let path = "/proc/sys/net/unix/max_dgram_qlen"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8), let length = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)),
            length < Self.logQueueLength
        else { return }
        _ = try? Self.run("/bin/sh", ["-c", "echo \(Self.logQueueLength) > \(path)"])
    }

    static let logQueueLength = 512

    package var log: String {
        (try? String(contentsOfFile: self.logFile, encoding: .utf8)) ?? ""
    }

    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package func stop() {
        _ = try? Self.postfix(["-c", self.config, "stop"])
    }

    deinit {
        // `postfix stop` on a thread of its own, which keeps the folder until it is done: the
        // last reference may go on the concurrency pool.
        let (config, folder) = (self.config, self.folder)
        Thread {
            _ = try? Self.postfix(["-c", config, "stop"])
            withExtendedLifetime(folder) {}
        }.start()
    }

    /// The realm of the SASL users (`smtpd_sasl_local_domain`): clients log in with the bare name.
    static let saslRealm = "rekey.test"

    /// Runs `postfix` (through `sudo -n` unless this is root): exit status and output.
    static func postfix(_ arguments: [String]) throws -> (Int32, String) {
        try Self.run("/usr/sbin/postfix", arguments)
    }

    /// Runs a program as root (through `sudo -n` unless this is root), failing unless it succeeds.
    static func asRoot(_ program: String, _ arguments: [String], input: String? = nil) throws {
        let (status, output) = try Self.run(program, arguments, input: input)
        guard status == 0 else {
            throw SMTPTestServer.StartError(message: "\(program) \(arguments.joined(separator: " ")) failed (\(status)): \(output)")
        }
    }

    static func run(_ program: String, _ arguments: [String], input: String? = nil) throws -> (Int32, String) {
        let process = Process()
        if getuid() == 0 {
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/sudo")
            process.arguments = ["-n", program] + arguments
        }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let stdin = Pipe()
        process.standardInput = stdin
        try process.run()
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
        }
        try? stdin.fileHandleForWriting.close()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        waitForExit(process)
        return (process.terminationStatus, text)
    }

    static func accepts(port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

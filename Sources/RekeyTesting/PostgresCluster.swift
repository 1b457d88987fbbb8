import Foundation
import Logging
import PostgresNIO
import Synchronization

/// A throw-away PostgreSQL cluster (Debian's `postgresql`) for the tests: `initdb` in a temporary
/// folder, a server on a free loopback port with password (SCRAM) authentication, and one fresh
/// database per test from ``makeDatabase()``.
///
/// One cluster serves a whole test process (``shared()``). PostgreSQL refuses to run as root, so
/// as root it runs as the `postgres` user the Debian package creates. A watcher shell started with
/// it stops the server and removes the folder once the test process is gone, whatever way it ends.
package final class PostgresCluster: Sendable {
    package let folder: String
    package let port: Int
    package let user = "rekey"
    package let password = "rekey-test-password"

    private static let instance = Mutex<Result<PostgresCluster, any Error>?>(nil)

    /// The process's cluster, started on first use (off the concurrency pool: `initdb` takes a
    /// second or two).
    package static func shared() async throws -> PostgresCluster {
        if let existing = Self.instance.withLock({ $0 }) {
            return try existing.get()
        }
        return try await offPool { try Self.startIfNeeded() }
    }

    private static func startIfNeeded() throws -> PostgresCluster {
        try Self.instance.withLock { instance in
            if let instance { return try instance.get() }
            let result = Result { try PostgresCluster() }
            instance = result
            return try result.get()
        }
    }

    /// The folder of the server's executables (`initdb`, `postgres`): Debian keeps them per major
    /// version under /usr/lib/postgresql.
    package static func binaries() throws -> String {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        guard let newest = versions.last, FileManager.default.isExecutableFile(atPath: "\(root)/\(newest)/bin/postgres") else {
            throw SMTPTestServer.StartError(message: "PostgreSQL is not installed (no \(root)/*/bin/postgres); `make test` installs it")
        }
        return "\(root)/\(newest)/bin"
    }

    private init() throws {
        let bin = try Self.binaries()
        self.folder = NSTemporaryDirectory() + "rekey-postgres-\(UUID().uuidString)"
        self.port = try Self.freePort()
        let data = self.folder + "/data"
        try FileManager.default.createDirectory(atPath: self.folder, withIntermediateDirectories: true)
        try self.password.write(toFile: self.folder + "/pwfile", atomically: true, encoding: .utf8)
        let asUser: [String]
        if getuid() == 0 {
            try Self.check("/bin/chown", ["-R", "postgres", self.folder])
            asUser = ["/usr/sbin/runuser", "-u", "postgres", "--"]
        } else {
            asUser = []
        }
        let initdb = asUser + ["\(bin)/initdb", "-D", data, "-U", self.user, "--pwfile=\(self.folder)/pwfile", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
        try Self.check(initdb[0], Array(initdb.dropFirst()))
        // The server, and a watcher that stops it and removes the folder when this process ends.
        let server = ([String](asUser) + [
            "\(bin)/postgres", "-D", data, "-c", "listen_addresses=127.0.0.1", "-c", "port=\(self.port)",
            "-c", "unix_socket_directories=\(self.folder)", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=500", "-c", "shared_buffers=64MB",
        ]).map { "'\($0)'" }.joined(separator: " ")
        // (A background job of a non-interactive shell ignores SIGINT, so the server is stopped
        // with pg_ctl rather than a signal from here.)
        let stop = (asUser + ["\(bin)/pg_ctl", "stop", "-D", data, "-m", "fast", "-w"]).map { "'\($0)'" }.joined(separator: " ")
        let script = """
            \(server) > '\(self.folder)/server.log' 2>&1 &
            server=$!
            while kill -0 \(getpid()) 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 0.5; done
            \(stop) > /dev/null 2>&1; wait $server
            rm -rf '\(self.folder)'
            """
        let watcher = Process()
        watcher.executableURL = URL(fileURLWithPath: "/bin/sh")
        watcher.arguments = ["-c", script]
        watcher.standardInput = FileHandle.nullDevice
        watcher.standardOutput = FileHandle.nullDevice
        watcher.standardError = FileHandle.nullDevice
        try watcher.run()
        // Ready when it takes sessions: the port accepts connections earlier, while the server
        // still answers "the database system is starting up".
        let deadline = Date().addingTimeInterval(60)
        while !PostfixRelay.accepts(port: self.port) || (try? ServiceProcess.run("\(bin)/pg_isready", ["-q", "-h", "127.0.0.1", "-p", "\(self.port)"]))?.status != 0 {
            guard Date() < deadline, watcher.isRunning else {
                let log = (try? String(contentsOfFile: self.folder + "/server.log", encoding: .utf8)) ?? ""
                throw SMTPTestServer.StartError(message: "PostgreSQL did not start on port \(self.port): \(log)")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// A connection string for `database` on this cluster.
    package func url(database: String) -> String {
        "postgres://\(self.user):\(self.password)@127.0.0.1:\(self.port)/\(database)?sslmode=disable"
    }

    /// A new, empty database of its own for one test; its connection string.
    package func makeDatabase() async throws -> String {
        let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        // From template0, which nobody connects to, so that tests creating databases at once do
        // not get in each other's way.
        try await self.execute("CREATE DATABASE \(name) TEMPLATE template0")
        return self.url(database: name)
    }

    /// Runs `sql` as the cluster's superuser (roles, grants, terminating sessions).
    /// Errors come with the server's message (postgres-nio hides it from `description`).
    package func execute(_ sql: String, database: String = "postgres") async throws {
        let logger = Logger(label: "rekey.test.postgres")
        do {
            let connection = try await PostgresConnection.connect(
                configuration: .init(host: "127.0.0.1", port: self.port, username: self.user, password: self.password, database: database, tls: .disable),
                id: 1, logger: logger
            )
            do {
                try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
            } catch {
                try? await connection.close()
                throw error
            }
            try await connection.close()
        } catch {
            throw SMTPTestServer.StartError(message: "`\(sql)` on the test cluster failed: \(String(reflecting: error))")
        }
    }

    private static func check(_ program: String, _ arguments: [String]) throws {
        let (status, output) = try ServiceProcess.run(program, arguments, inheritingEnvironment: true)
        guard status == 0 else {
            throw SMTPTestServer.StartError(message: "\(program) \(arguments.joined(separator: " ")) failed: \(output)")
        }
    }

    /// A loopback port nobody listens on now.
    private static func freePort() throws -> Int {
        let reservation = try PortReservation()
        defer { reservation.release() }
        return reservation.port
    }
}

/// A loopback port held by a socket that is bound but not listening: connections to it are
/// refused, and no other process can take it until ``release()``. For tests of a peer that is
/// down, then comes back on the same port. With `listening`, the socket listens and never
/// accepts: connections complete and nothing ever answers them (a peer that hangs).
package final class PortReservation: @unchecked Sendable {
    // @unchecked: used by the one test that owns it.
    package let port: Int
    private var descriptor: Int32

    package init(listening: Bool = false) throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw SMTPTestServer.StartError(message: "socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) == 0 && getsockname(descriptor, $0, &length) == 0 }
        }
        guard bound, !listening || listen(descriptor, 64) == 0 else {
            close(descriptor)
            throw SMTPTestServer.StartError(message: "cannot bind a loopback port")
        }
        self.descriptor = descriptor
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// Lets the port go, for a server about to listen on it.
    package func release() {
        if self.descriptor >= 0 {
            close(self.descriptor)
            self.descriptor = -1
        }
    }

    deinit {
        self.release()
    }
}

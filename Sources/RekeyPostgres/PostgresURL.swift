import NIOSSL
import PostgresNIO

/// A PostgreSQL connection string, `postgres://user:password@host:port/database?sslmode=…`, as
/// ops give it in `--database`, `REKEY_<SERVICE>_DATABASE` or the config file.
///
/// User and password may be percent-encoded (a `@` or `:` in a password is `%40`, `%3A`). The
/// port defaults to 5432. `sslmode` is libpq's: `disable`, `prefer` (the default: TLS when the
/// server offers it, unverified), `require` (TLS, unverified), `verify-ca` (TLS, the server's
/// certificate must chain to `sslrootcert`, or to the system's roots without it) and `verify-full`
/// (that, and the certificate must name the host). Anything else in the query is refused rather
/// than ignored, so a typo is not a silent downgrade.
package struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    package enum SSLMode: String, Sendable, CaseIterable {
        case disable, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    package var user: String
    package var password: String?
    package var host: String
    package var port: Int
    package var database: String
    package var sslMode: SSLMode
    /// `sslrootcert`: a PEM file of the CA(s) the server's certificate must chain to.
    package var rootCertificatePath: String?

    /// Whether `text` is meant as a PostgreSQL connection string rather than a file path.
    package static func isPostgresURL(_ text: String) -> Bool {
        text.hasPrefix("postgres://") || text.hasPrefix("postgresql://")
    }

    /// Parses a connection string; the error says what is wrong without repeating the password.
    package init(_ text: String) throws(PostgresURLError) {
        guard let schemeEnd = text.range(of: "://"), Self.isPostgresURL(text) else {
            throw PostgresURLError("must start with postgres:// (postgres://user:password@host:5432/database)")
        }
        var rest = Substring(text[schemeEnd.upperBound...])
        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        guard let slash = rest.firstIndex(of: "/") else {
            throw PostgresURLError("names no database: add /DATABASE after the host")
        }
        let database = try Self.decode(rest[rest.index(after: slash)...], "the database name")
        guard !database.isEmpty, database.utf8.count <= 63 else {
            throw PostgresURLError("the database name must be 1 to 63 bytes")
        }
        var authority = rest[..<slash]
        guard let at = authority.lastIndex(of: "@") else {
            throw PostgresURLError("names no user: postgres://USER:PASSWORD@host/database")
        }
        let userInfo = authority[..<at]
        authority = authority[authority.index(after: at)...]
        if let colon = userInfo.firstIndex(of: ":") {
            self.user = try Self.decode(userInfo[..<colon], "the user")
            self.password = try Self.decode(userInfo[userInfo.index(after: colon)...], "the password")
        } else {
            self.user = try Self.decode(userInfo, "the user")
            self.password = nil
        }
        guard !self.user.isEmpty else {
            throw PostgresURLError("names no user: postgres://USER:PASSWORD@host/database")
        }
        // The host: a name, an IPv4 address, or an IPv6 address in brackets; then :port.
        var hostPart = authority
        var portText: Substring?
        if hostPart.hasPrefix("[") {
            guard let close = hostPart.firstIndex(of: "]") else {
                throw PostgresURLError("has an IPv6 address without its closing ]")
            }
            let after = hostPart[hostPart.index(after: close)...]
            if after.hasPrefix(":") {
                portText = after.dropFirst()
            } else if !after.isEmpty {
                throw PostgresURLError("has something after the IPv6 address that is not :PORT")
            }
            hostPart = hostPart[hostPart.index(after: hostPart.startIndex)..<close]
        } else if let colon = hostPart.lastIndex(of: ":") {
            portText = hostPart[hostPart.index(after: colon)...]
            hostPart = hostPart[..<colon]
        }
        guard !hostPart.isEmpty, hostPart.utf8.count <= 253,
              hostPart.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") })
        else {
            throw PostgresURLError("names no valid host")
        }
        self.host = String(hostPart)
        if let portText {
            guard let port = Int(portText), (1...65535).contains(port) else {
                throw PostgresURLError("has a port that is not a number from 1 to 65535")
            }
            self.port = port
        } else {
            self.port = 5432
        }
        self.database = database
        self.sslMode = .prefer
        self.rootCertificatePath = nil
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0])
            let value = parts.count == 2 ? try Self.decode(parts[1], key) : ""
            switch key {
            case "sslmode":
                guard let mode = SSLMode(rawValue: value) else {
                    throw PostgresURLError("has sslmode=\(value); use one of \(SSLMode.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                self.sslMode = mode
            case "sslrootcert":
                guard !value.isEmpty else { throw PostgresURLError("has an empty sslrootcert") }
                self.rootCertificatePath = value
            default:
                throw PostgresURLError("has the parameter \(key), which Rekey does not know (it knows sslmode and sslrootcert)")
            }
        }
        if self.rootCertificatePath != nil, self.sslMode != .verifyCA, self.sslMode != .verifyFull {
            throw PostgresURLError("has sslrootcert but sslmode=\(self.sslMode.rawValue): set sslmode=verify-ca or verify-full for it to be used")
        }
    }

    /// The string without its password, for logs.
    package var description: String {
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        let password = self.password == nil ? "" : ":***"
        return "postgres://\(self.user)\(password)@\(host):\(self.port)/\(self.database)?sslmode=\(self.sslMode.rawValue)"
    }

    /// postgres-nio's pool configuration for this string.
    package func clientConfiguration() throws -> PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS
        switch try self.tlsConfiguration() {
        case .none: tls = .disable
        case .some((let configuration, let required)): tls = required ? .require(configuration) : .prefer(configuration)
        }
        return PostgresClient.Configuration(host: self.host, port: self.port, username: self.user, password: self.password, database: self.database, tls: tls)
    }

    /// postgres-nio's single-connection configuration for this string.
    package func connectionConfiguration() throws -> PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS
        switch try self.tlsConfiguration() {
        case .none:
            tls = .disable
        case .some((let configuration, let required)):
            let context = try NIOSSLContext(configuration: configuration)
            tls = required ? .require(context) : .prefer(context)
        }
        var configuration = PostgresConnection.Configuration(host: self.host, port: self.port, username: self.user, password: self.password, database: self.database, tls: tls)
        configuration.options.connectTimeout = .seconds(5)
        return configuration
    }

    /// The TLS settings of `sslmode`, and whether TLS is required; nil for `disable`.
    private func tlsConfiguration() throws -> (TLSConfiguration, required: Bool)? {
        var configuration = TLSConfiguration.makeClientConfiguration()
        switch self.sslMode {
        case .disable:
            return nil
        case .prefer, .require:
            configuration.certificateVerification = .none
            return (configuration, self.sslMode == .require)
        case .verifyCA, .verifyFull:
            configuration.certificateVerification = self.sslMode == .verifyFull ? .fullVerification : .noHostnameVerification
            if let path = self.rootCertificatePath {
                do {
                    configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(path))
                } catch {
                    throw PostgresURLError("has sslrootcert=\(path), which cannot be read as PEM certificates: \(error)")
                }
            }
            return (configuration, true)
        }
    }

    private static func decode(_ text: Substring, _ what: String) throws(PostgresURLError) -> String {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue) else {
                throw PostgresURLError("has a bad percent-escape in \(what)")
            }
            bytes.append(high << 4 | low)
        }
        guard !bytes.contains(0), let decoded = String(validating: bytes, as: UTF8.self) else {
            throw PostgresURLError("has \(what) that is not UTF-8 text")
        }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// A connection string Rekey cannot use; the message completes "the database URL …".
package struct PostgresURLError: Error, Equatable, CustomStringConvertible {
    package var message: String

    package init(_ message: String) {
        self.message = message
    }

    package var description: String { "the database URL \(self.message)" }
}

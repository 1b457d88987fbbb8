import RekeyPostgres
import Testing

@Suite("PostgreSQL connection strings")
struct PostgresURLTests {
    @Test("the parts of a connection string, percent-escapes decoded, defaults filled in")
    func parts() throws {
        let url = try PostgresURL("postgres://rekey:p%40ss%3Aword@db.internal/rekey_prod")
        #expect(url.user == "rekey")
        #expect(url.password == "p@ss:word")
        #expect(url.host == "db.internal")
        #expect(url.port == 5432)
        #expect(url.database == "rekey_prod")
        #expect(url.sslMode == .prefer)
        let full = try PostgresURL("postgresql://app@[2001:db8::5]:6432/rekey?sslmode=verify-full&sslrootcert=/etc/rekey/pg-ca.pem")
        #expect(full.host == "2001:db8::5" && full.port == 6432 && full.password == nil)
        #expect(full.sslMode == .verifyFull && full.rootCertificatePath == "/etc/rekey/pg-ca.pem")
    }

    @Test("the description never holds the password")
    func description() throws {
        let url = try PostgresURL("postgres://rekey:hunter2-secret@127.0.0.1:5433/rekey?sslmode=require")
        #expect(url.description == "postgres://rekey:***@127.0.0.1:5433/rekey?sslmode=require")
        #expect(try PostgresURL("postgres://app@[::1]/x").description == "postgres://app@[::1]:5432/x?sslmode=prefer")
    }

    @Test("what cannot be used is refused, saying what is wrong and never repeating the password", arguments: [
        ("http://u:pw-secret@h/db", "must start with postgres://"),
        ("postgres://u:pw-secret@h", "names no database"),
        ("postgres://u:pw-secret@h/", "database name must be 1 to 63 bytes"),
        ("postgres://u:pw-secret@h/" + String(repeating: "d", count: 64), "database name must be 1 to 63 bytes"),
        ("postgres://h/db", "names no user"),
        ("postgres://:pw-secret@h/db", "names no user"),
        ("postgres://u:pw-secret@/db", "names no valid host"),
        ("postgres://u:pw-secret@h:0/db", "port that is not a number from 1 to 65535"),
        ("postgres://u:pw-secret@h:65536/db", "port that is not a number from 1 to 65535"),
        ("postgres://u:pw-secret@h:-1/db", "port that is not a number from 1 to 65535"),
        ("postgres://u:pw-secret@h:99999999999999999999/db", "port that is not a number from 1 to 65535"),
        ("postgres://u:pw-secret@[::1/db", "IPv6 address without its closing ]"),
        ("postgres://u:pw%ZZsecret@h/db", "bad percent-escape in the password"),
        ("postgres://u:pw%00secret@h/db", "the password that is not UTF-8 text"),
        ("postgres://u:pw-secret@h/db?sslmode=allow", "sslmode=allow"),
        ("postgres://u:pw-secret@h/db?sslmode=", "sslmode="),
        ("postgres://u:pw-secret@h/db?connect_timeout=5", "the parameter connect_timeout"),
        ("postgres://u:pw-secret@h/db?sslrootcert=/ca.pem", "set sslmode=verify-ca or verify-full"),
        ("postgres://u:pw-secret@h/db?sslmode=verify-ca&sslrootcert=", "empty sslrootcert"),
    ])
    func refused(text: String, expected: String) {
        #expect {
            try PostgresURL(text)
        } throws: { error in
            let message = "\(error)"
            return message.hasPrefix("the database URL ") && message.contains(expected) && !message.contains("secret")
        }
    }

    @Test("postgres:// and postgresql:// are PostgreSQL; a path is not")
    func recognised() {
        #expect(PostgresURL.isPostgresURL("postgres://u@h/d"))
        #expect(PostgresURL.isPostgresURL("postgresql://u@h/d"))
        #expect(!PostgresURL.isPostgresURL("/var/lib/rekey/tokens.sqlite"))
    }

    @Test("an sslrootcert that cannot be read is an error when the connection is configured")
    func unreadableRootCertificate() throws {
        let url = try PostgresURL("postgres://u@h/d?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
        #expect {
            try url.clientConfiguration()
        } throws: { error in
            "\(error)".contains("sslrootcert=/nonexistent/ca.pem, which cannot be read as PEM certificates")
        }
    }
}

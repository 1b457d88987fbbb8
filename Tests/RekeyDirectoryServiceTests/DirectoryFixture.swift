import Logging
import RekeyClock
import RekeyDirectoryService
import RekeyPostgres
import RekeySQLite
import RekeyTesting
import Testing

/// The backends the directory's rules run on; every rule is tested on each.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { self.rawValue }
}

/// A fresh directory on `backend`: a new SQLite file, or a new database on the test cluster, with
/// the migrations applied and a clock that only moves when told to.
final class DirectoryFixture: Sendable {
    let clock: ManualClock
    let store: DirectoryStore
    let database: DirectoryDatabase
    private let folder: TemporaryFolder?
    private let postgres: PostgresServiceDatabase?

    init(_ backend: Backend = .sqlite, configuration: DirectoryStore.Configuration = DirectoryStore.Configuration(), clock: ManualClock = ManualClock()) async throws {
        self.clock = clock
        self.store = DirectoryStore(configuration: configuration, clock: clock)
        switch backend {
        case .sqlite:
            let folder = try TemporaryFolder()
            let sqlite = try SQLiteDatabase(path: folder.path + "/directory.sqlite", migrations: DirectoryStore.migrations)
            (self.folder, self.postgres, self.database) = (folder, nil, .sqlite(sqlite))
        case .postgres:
            let url = try await PostgresCluster.shared().makeDatabase()
            let logger = Logger(label: "rekey.test")
            // Four connections: enough for the tests of concurrent work, few enough that dozens of
            // these fixtures starting at once do not swamp the shared test cluster.
            let postgres = try PostgresServiceDatabase(url: try PostgresURL(url), schema: DirectoryStore.postgresSchema, maximumConnections: 4, logger: logger)
            try await postgres.migrate(DirectoryStore.postgresMigrations)
            (self.folder, self.postgres) = (nil, postgres)
            self.database = .postgres(PostgresSQLDatabase(database: postgres, threads: 4, logger: logger))
        }
    }

    deinit {
        self.postgres?.close()
    }

    func run<R: Sendable>(_ body: @escaping @Sendable (DirectoryStore, any SQLConnection) throws -> R) async throws -> R {
        let store = self.store
        return try await self.database.withConnection { try body(store, $0) }
    }

    @discardableResult
    func create(_ name: String, _ email: String, role: String = "customer") async throws -> UserRecord {
        try await self.run { store, c in try store.createUser(.init(name: name, role: role, email: email), actor: .system, in: c) }
    }

    func expectError(
        _ body: @escaping @Sendable (DirectoryStore, any SQLConnection) throws -> some Sendable, _ check: @escaping (DirectoryError) -> Bool,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        await #expect(sourceLocation: sourceLocation) {
            try await self.run(body)
        } throws: { error in
            guard let error = error as? DirectoryError else { return false }
            return check(error)
        }
    }
}

import Foundation
import Logging

/// Why a `migrate-to` copy did not run or did not commit; said to the operator as it is.
package struct StoreCopyRefusal: Error, CustomStringConvertible {
    package var description: String

    package init(_ description: String) {
        self.description = description
    }
}

/// What every service's `migrate-to` shares: the target checked, the SQLite file found, the
/// target schema opened, the copy run, nothing logged below warnings.
package struct StoreMigration {
    package let target: PostgresURL
    /// The SQLite file to copy.
    package let source: String

    /// - Parameters:
    ///   - dataDir: the `--data-dir` given, else the service's `REKEY_<SERVICE>_DATA_DIR`, else `./data`.
    ///   - file: the store's file name in the data folder.
    /// - Throws: ``StoreCopyRefusal`` for a URL that cannot be used (never repeating its password)
    ///   or a missing store.
    package init(url: String, dataDir: String?, environmentKey: String, file: String) throws {
        do {
            self.target = try PostgresURL(url)
        } catch {
            throw StoreCopyRefusal("\(error)")
        }
        let folder = dataDir ?? ProcessInfo.processInfo.environment[environmentKey] ?? "./data"
        self.source = (folder as NSString).appendingPathComponent(file)
        guard FileManager.default.fileExists(atPath: self.source) else {
            throw StoreCopyRefusal("there is no \(self.source) to copy (data_dir is \(folder))")
        }
    }

    /// Opens `schema` at the target (migrations applied) and runs `copy` against it.
    package func run<R>(
        schema: String, migrations: [PostgresMigration], label: String, _ copy: (PostgresServiceDatabase, Logger) async throws -> R
    ) async throws -> R {
        var logger = Logger(label: label)
        logger.logLevel = .warning
        let database = try PostgresServiceDatabase(url: self.target, schema: schema, maximumConnections: 2, logger: logger)
        defer { database.close() }
        try await database.open(migrations)
        return try await copy(database, logger)
    }
}

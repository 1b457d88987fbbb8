// `RekeyBenchmark directory-store DB` and `RekeyBenchmark directory-rpc PORT CREDENTIAL DB`:
// search and find-by-email latency over a directory database that Benchmarks/directory.py filled.
// Prints one line per query class: "class count p50_us p99_us".

import Logging
import RekeyClock
import RekeyDirectoryAPI
import RekeyDirectoryService
import RekeyRPCNIO
import RekeySQLite

/// The query classes: single words of 1, 2 and 3 letters that start real names or addresses,
/// two-word queries, and exact addresses.
struct DirectoryWorkload {
    var prefixes: [Int: [String]] = [:]
    var twoWords: [String] = []
    var emails: [String] = []

    /// Samples the database itself, so the queries match what is stored.
    static func load(_ database: SQLiteDatabase, count: Int) async throws -> DirectoryWorkload {
        try await database.withConnection { connection in
            var workload = DirectoryWorkload()
            let rows = try connection.query(
                "SELECT u.name, e.address FROM users u JOIN emails e ON e.user_id = u.id AND e.is_primary = 1 ORDER BY random() LIMIT ?",
                .integer(Int64(count))
            )
            var generator = SystemRandomNumberGenerator()
            for row in rows {
                let name = row.string("name") ?? ""
                let address = row.string("address") ?? ""
                let words = name.lowercased().split(separator: " ")
                let word = words.randomElement(using: &generator) ?? "a"
                for length in 1...3 {
                    workload.prefixes[length, default: []].append(String(word.prefix(length)))
                }
                if words.count >= 2 {
                    workload.twoWords.append("\(words[0].prefix(2)) \(words[1].prefix(1))")
                }
                workload.emails.append(address.uppercased())
            }
            return workload
        }
    }
}

func percentiles(_ latencies: [Double]) -> (Double, Double) {
    let sorted = latencies.sorted()
    guard !sorted.isEmpty else { return (0, 0) }
    return (sorted[sorted.count / 2], sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))])
}

func timed(_ body: () async throws -> Void) async rethrows -> Double {
    let start = ContinuousClock.now
    try await body()
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12
}

/// The query classes, as `directory-rpc` names them.
let directoryQueryClasses = ["prefix1", "prefix2", "prefix3", "two-words", "find-by-email"]

/// Runs each query class through `search` and `find`, printing the figures: every class, or those
/// named in `only` (`prefix1`…`prefix3`, `two-words`, `find-by-email`).
func runDirectoryWorkload(
    _ workload: DirectoryWorkload,
    only: Set<String> = [],
    search: (String, Bool) async throws -> Int,
    find: (String) async throws -> Bool
) async throws {
    var classes: [(String, [String])] = (1...3).map { ("prefix\($0)", workload.prefixes[$0] ?? []) }
    classes.append(("two-words", workload.twoWords))
    if !only.isEmpty { classes.removeAll { !only.contains($0.0) } }
    for (label, queries) in classes {
        for staff in [true, false] {
            var latencies: [Double] = []
            var empty = 0
            for query in queries {
                var found = 0
                latencies.append(try await timed { found = try await search(query, staff) })
                if found == 0 { empty += 1 }
            }
            let (p50, p99) = percentiles(latencies)
            print("search-\(staff ? "staff" : "all")-\(label) \(latencies.count) \(p50) \(p99) empty=\(empty)")
        }
    }
    guard only.isEmpty || only.contains("find-by-email") else { return }
    var latencies: [Double] = []
    for email in workload.emails {
        var found = false
        latencies.append(try await timed { found = try await find(email) })
        precondition(found, "find-by-email missed \(email)")
    }
    let (p50, p99) = percentiles(latencies)
    print("find-by-email \(latencies.count) \(p50) \(p99)")
}

func runDirectoryStore(path: String, count: Int) async throws {
    let database = try SQLiteDatabase(path: path, migrations: DirectoryStore.migrations, cacheKibibytes: 64 * 1024)
    let store = DirectoryStore(clock: SystemWallClock())
    let workload = try await DirectoryWorkload.load(database, count: count)
    try await runDirectoryWorkload(workload) { query, staff in
        try await database.withConnection { try store.search(query, staffOnly: staff, pageSize: 20, pageToken: "", in: $0) }.users.count
    } find: { email in
        try await database.withConnection { try store.findUser(byEmail: email, in: $0) } != nil
    }
}

func runDirectoryRPC(port: Int, credential: String, path: String, count: Int, only: Set<String>) async throws {
    let unknown = only.subtracting(directoryQueryClasses)
    guard unknown.isEmpty else {
        throw BenchmarkUsageError(message: "no query class named \(unknown.sorted().joined(separator: ", ")); the classes: \(directoryQueryClasses.joined(separator: ", "))")
    }
    let database = try SQLiteDatabase(path: path, migrations: DirectoryStore.migrations)
    let workload = try await DirectoryWorkload.load(database, count: count)
    var logger = Logger(label: "rekey.bench.directory")
    logger.logLevel = .warning
    let client = RPCClient(configuration: .init(host: "127.0.0.1", port: port, credential: credential, caller: "bench"), logger: logger)
    let directory = Rekey_Directory_V1_Directory.Client(wrapping: client)
    try await runDirectoryWorkload(workload, only: only) { query, staff in
        var request = Rekey_Directory_V1_SearchUsersRequest()
        request.query = query
        request.scope = staff ? .staff : .all
        return try await directory.searchUsers(request).users.count
    } find: { email in
        var request = Rekey_Directory_V1_FindUserByEmailRequest()
        request.email = email
        return try await directory.findUserByEmail(request).user != nil
    }
    await client.close()
}

struct BenchmarkUsageError: Error, CustomStringConvertible {
    var message: String
    var description: String { self.message }
}

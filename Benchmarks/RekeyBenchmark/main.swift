// The Rekey side of `make bench`: an RPC server and a load generator using the real generated
// stubs, the real interceptors and the real NIO transport. Benchmarks/run.py drives it next to
// the C ping-pong baseline.
//
//   RekeyBenchmark server [--tls DIR]          prints its port, serves until stdin closes
//   RekeyBenchmark client PORT CALLERS SECONDS [--tls DIR]
//                                               prints "calls seconds p50_us p99_us"
//   (nio-server, nio-client, make-certs, handshakes: BareAndTLS.swift)
//   RekeyBenchmark frame-size                   prints the size of one request frame's body
//   RekeyBenchmark tokens PORT[,PORT…] CREDENTIAL CALLERS SECONDS
//                                               issue + redeem pairs against rekey-reset-token
//                                               (several ports: replicas, spread as the gateway does);
//                                               prints "pairs seconds p50_us p99_us" (per pair)
//   RekeyBenchmark directory-store DB QUERIES   search/find latency in-process (DirectoryBenchmark.swift)
//   RekeyBenchmark directory-rpc PORT CREDENTIAL DB QUERIES [CLASS…]
//                                               the same through the RPC to rekey-directory (only
//                                               the classes named: prefix1…3, two-words, find-by-email)
//   RekeyBenchmark notifier-enqueue PORT CREDENTIAL CALLERS SECONDS
//   RekeyBenchmark notifier-drain PORT CREDENTIAL COUNT   (NotifierBenchmark.swift)

import Logging
import NIOCore
import NIOPosix
import RekeyRPC
import RekeyRPCNIO
import RekeyTesting
import RekeyTokensAPI

#if canImport(Glibc)
import Glibc
#endif

let credential = "benchmark-credential-0123456789abcdef"

/// A ~100-byte request, as a typical Rekey call carries.
func makeRequest() -> Rekey_Testing_V1_EchoRequest {
    var request = Rekey_Testing_V1_EchoRequest()
    request.text = String(repeating: "x", count: 96)
    return request
}

/// Runs `operation` back to back in `callers` tasks for `seconds`, then prints
/// "operations seconds p50_us p99_us". `operation` gets the caller's number and its iteration.
func measure(callers: Int, seconds: Double, _ operation: @escaping @Sendable (Int, Int) async throws -> Void) async throws {
    let end = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
    var latencies = try await withThrowingTaskGroup(of: [Float].self) { group in
        for caller in 0..<callers {
            group.addTask {
                var latencies: [Float] = []
                latencies.reserveCapacity(1 << 16)
                var index = 0
                while true {
                    let start = ContinuousClock.now
                    if start >= end { break }
                    try await operation(caller, index)
                    let elapsed = ContinuousClock.now - start
                    latencies.append(Float(elapsed.components.attoseconds) / 1e12 + Float(elapsed.components.seconds) * 1e6)
                    index += 1
                }
                return latencies
            }
        }
        return try await group.reduce(into: [Float]()) { $0 += $1 }
    }
    latencies.sort()
    let p50 = latencies.isEmpty ? 0 : latencies[latencies.count / 2]
    let p99 = latencies.isEmpty ? 0 : latencies[Int(Double(latencies.count) * 0.99)]
    print("\(latencies.count) \(seconds) \(p50) \(p99)")
}

func runServer(tls: RPCTLS? = nil) async throws {
    var logger = Logger(label: "rekey.bench.server")
    logger.logLevel = .warning
    var configuration = RPCServer.Configuration.defaults
    configuration.tls = tls
    // As a service runs: with TLS, the caller's certificate decides; without, the credential.
    let authorization: any ServerInterceptor = tls == nil ? ServiceCredentialInterceptor(accepted: [credential]) : CallerPolicyInterceptor(policy: benchmarkPolicy)
    let server = RPCServer(
        configuration: configuration,
        services: [EchoService()],
        interceptors: [authorization, LoggingInterceptor(), MetricsInterceptor()],
        health: HealthService(),
        logger: logger
    )
    let running = Task { try await server.run() }
    print(try await server.localAddress.port!)
    fflush(nil)
    // Serve until the driver closes our standard input.
    try await NIOThreadPool.singleton.runIfActive {
        while getchar() != EOF {}
    }
    server.beginShutdown()
    try await running.value
}

func runClient(port: Int, callers: Int, seconds: Double, tls: RPCTLS? = nil) async throws {
    var logger = Logger(label: "rekey.bench.client")
    logger.logLevel = .warning
    let client = RPCClient(
        configuration: .init(
            host: "127.0.0.1", port: port, credential: tls == nil ? credential : nil, caller: "bench", tls: tls, serverIdentity: tls == nil ? nil : "directory"
        ),
        logger: logger
    )
    let echo = Rekey_Testing_V1_Echo.Client(wrapping: client)
    let request = makeRequest()
    _ = try await echo.echo(request)  // connect before the clock starts
    try await measure(callers: callers, seconds: seconds) { _, _ in
        _ = try await echo.echo(request)
    }
    await client.close()
}

/// Issue + redeem pairs, each for a user of its own so that rate limits do not interfere. With
/// several ports (replicas), calls are spread over them as the gateway does (``ReplicaSet``).
func runTokens(ports: [Int], credential: String, callers: Int, seconds: Double) async throws {
    var logger = Logger(label: "rekey.bench.tokens")
    logger.logLevel = .warning
    let clients = ports.map { RPCClient(configuration: .init(host: "127.0.0.1", port: $0, credential: credential, caller: "bench"), logger: logger) }
    let replicas = ReplicaSet(
        zip(ports, clients).map { ReplicaSet.Replica(name: "127.0.0.1:\($0)", transport: $1) }, isSafeToRepeat: { _ in false }, logger: logger
    )
    let tokens = Rekey_Tokens_V1_Tokens.Client(wrapping: replicas)
    try await measure(callers: callers, seconds: seconds) { caller, index in
        var issue = Rekey_Tokens_V1_IssueTokenRequest()
        issue.purpose = .passwordReset
        issue.userID = "bench-\(caller)-\(index)"
        let issued = try await tokens.issueToken(issue)
        var redeem = Rekey_Tokens_V1_RedeemTokenRequest()
        redeem.purpose = .passwordReset
        redeem.token = issued.token
        _ = try await tokens.redeemToken(redeem)
    }
    for client in clients { await client.close() }
}

func frameSize() throws -> Int {
    var envelope = Rekey_Rpc_V1_Request()
    envelope.callID = 1
    envelope.method = Rekey_Testing_V1_Echo.Method.Echo.descriptor.fullyQualifiedMethod
    envelope.payload = try makeRequest().serializedBytes()
    var authorization = Rekey_Rpc_V1_MetadataEntry()
    authorization.key = MetadataKey.authorization
    authorization.value = "Bearer \(credential)"
    var caller = Rekey_Rpc_V1_MetadataEntry()
    caller.key = MetadataKey.caller
    caller.value = "bench"
    envelope.metadata = [authorization, caller]
    return try envelope.serializedBytes().count
}

// Run Swift tasks on NIO's event loops, as Rekey's executables do: a call resumed by the event loop
// that read its answer goes on on that thread instead of waking another.
NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()

/// Ends the program with a message on standard error (bad arguments, a server that cannot be
/// reached): a benchmark driver reads the message instead of a crash report.
func fail(_ message: String) -> Never {
    let line = "RekeyBenchmark: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(1)
}

func number<T: LosslessStringConvertible>(_ text: String, _ name: String) -> T {
    guard let value = T(text) else { fail("\(name) must be a number, got `\(text)`") }
    return value
}

var arguments = CommandLine.arguments
/// `--tls DIR` at the end of the arguments: the certificates made by `make-certs`.
var tlsFolder: String?
if arguments.count >= 3, arguments[arguments.count - 2] == "--tls" {
    tlsFolder = arguments.last
    arguments.removeLast(2)
}
do {
    switch arguments.dropFirst().first {
    case "server" where arguments.count == 2:
        try await runServer(tls: try tlsFolder.map { try benchmarkTLS($0, "directory") })
    case "client" where arguments.count == 5:
        try await runClient(
            port: number(arguments[2], "PORT"), callers: number(arguments[3], "CALLERS"), seconds: number(arguments[4], "SECONDS"),
            tls: try tlsFolder.map { try benchmarkTLS($0, "gateway") }
        )
    case "nio-server" where arguments.count == 2:
        try await runBareServer()
    case "nio-client" where arguments.count == 5:
        try await runBareClient(port: number(arguments[2], "PORT"), callers: number(arguments[3], "CALLERS"), seconds: number(arguments[4], "SECONDS"))
    case "make-certs" where arguments.count == 3:
        try makeCertificates(in: arguments[2])
    case "handshakes" where arguments.count == 4:
        try await runHandshakes(port: number(arguments[2], "PORT"), count: number(arguments[3], "COUNT"), tls: try tlsFolder.map { try benchmarkTLS($0, "gateway") })
    case "tokens" where arguments.count == 6:
        try await runTokens(
            ports: arguments[2].split(separator: ",").map { number(String($0), "PORT") }, credential: arguments[3],
            callers: number(arguments[4], "CALLERS"), seconds: number(arguments[5], "SECONDS")
        )
    case "directory-store" where arguments.count == 4:
        try await runDirectoryStore(path: arguments[2], count: number(arguments[3], "QUERIES"))
    case "directory-rpc" where arguments.count >= 6:
        try await runDirectoryRPC(
            port: number(arguments[2], "PORT"), credential: arguments[3], path: arguments[4], count: number(arguments[5], "QUERIES"),
            only: Set(arguments.dropFirst(6))
        )
    case "notifier-enqueue" where arguments.count == 6:
        try await runNotifierEnqueue(
            port: number(arguments[2], "PORT"), credential: arguments[3], callers: number(arguments[4], "CALLERS"), seconds: number(arguments[5], "SECONDS")
        )
    case "notifier-drain" where arguments.count == 5:
        try await runNotifierDrain(port: number(arguments[2], "PORT"), credential: arguments[3], count: number(arguments[4], "COUNT"))
    case "frame-size":
        print(try frameSize())
    default:
        print("usage: RekeyBenchmark server [--tls DIR] | client PORT CALLERS SECONDS [--tls DIR] | nio-server | nio-client PORT CALLERS SECONDS | make-certs DIR | handshakes PORT COUNT [--tls DIR] | frame-size | tokens PORT CREDENTIAL CALLERS SECONDS")
        exit(2)
    }
} catch {
    fail("\(error)")
}

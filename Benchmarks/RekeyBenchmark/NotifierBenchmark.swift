// `RekeyBenchmark notifier-enqueue PORT CREDENTIAL CALLERS SECONDS`: Enqueue through the RPC,
// each committed before the answer; prints "calls seconds p50_us p99_us".
// `RekeyBenchmark notifier-drain PORT CREDENTIAL COUNT`: queues COUNT messages, then times until
// the queue is empty (every message accepted by the server); prints "messages seconds".

import Logging
import RekeyNotifierAPI
import RekeyRPCNIO

func resetMessage(_ key: String) -> Rekey_Notifier_V1_EnqueueRequest {
    var request = Rekey_Notifier_V1_EnqueueRequest()
    request.templateName = "password_reset"
    request.toAddress = "user-\(key)@example.com"
    request.toName = "Bench User"
    var link = Rekey_Notifier_V1_Variable()
    link.key = "link"
    link.value = "https://rekey.example/password/reset?token=" + String(repeating: "x", count: 43)
    var expires = Rekey_Notifier_V1_Variable()
    expires.key = "expires_in"
    expires.value = "30 minutes"
    request.variables = [link, expires]
    request.idempotencyKey = key
    return request
}

func notifierClient(port: Int, credential: String) -> (RPCClient, Rekey_Notifier_V1_Notifier.Client) {
    var logger = Logger(label: "rekey.bench.notifier")
    logger.logLevel = .warning
    let client = RPCClient(configuration: .init(host: "127.0.0.1", port: port, credential: credential, caller: "bench"), logger: logger)
    return (client, Rekey_Notifier_V1_Notifier.Client(wrapping: client))
}

func runNotifierEnqueue(port: Int, credential: String, callers: Int, seconds: Double) async throws {
    let (client, notifier) = notifierClient(port: port, credential: credential)
    let run = UInt64.random(in: 0...UInt64.max)
    try await measure(callers: callers, seconds: seconds) { caller, index in
        let response = try await notifier.enqueue(resetMessage("\(run)-\(caller)-\(index)"))
        precondition(response.status == .queued)
    }
    await client.close()
}

func runNotifierDrain(port: Int, credential: String, count: Int) async throws {
    let (client, notifier) = notifierClient(port: port, credential: credential)
    let run = UInt64.random(in: 0...UInt64.max)
    let start = ContinuousClock.now
    try await withThrowingTaskGroup(of: Void.self) { group in
        for caller in 0..<32 {
            group.addTask {
                for index in stride(from: caller, to: count, by: 32) {
                    _ = try await notifier.enqueue(resetMessage("drain-\(run)-\(index)"))
                }
            }
        }
        try await group.waitForAll()
    }
    // Only the depth matters: the smallest window keeps the statistics part of the answer
    // (attempts grouped by domain over the window) from costing more than the polling measures.
    var stats = Rekey_Notifier_V1_GetQueueStatsRequest()
    stats.windowMs = 1
    while try await notifier.getQueueStats(stats).depth > 0 {
        try await Task.sleep(for: .milliseconds(20))
    }
    let elapsed = ContinuousClock.now - start
    print("\(count) \(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)")
    await client.close()
}

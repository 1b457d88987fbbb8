#!/usr/bin/env python3
"""Runs Rekey's RPC benchmark next to plain-C and bare-SwiftNIO echoes (`make bench`).

For each scenario, each implementation gets a fresh server process and a client process; the
figures are calls per second, p50 and p99 latency, and CPU microseconds per call (server and
client together), plus the ratio to the epoll C echo of the same run (the baseline). Rows:

  C epoll      one-thread epoll server and client, frames of Rekey's request size: the limit
  C blocking   thread per connection, blocking reads (the first baseline, for comparison)
  NIO bare     SwiftNIO with a frame decoder and one handler decoding the EchoRequest with
               protobuf-c: no envelope, router or interceptors
  Rekey        the real RPC server and client (envelope, router, interceptors), one multiplexed
               connection for all callers
  Rekey mTLS   the same over mutual TLS 1.3 (P-256 certificates), long-lived connection

Then the cost of a new connection with one call, plaintext and with a full mTLS handshake.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run(server_cmd, client_cmd, pin):
    prefix = ["taskset", "-c", "0"] if pin else []
    server = subprocess.Popen(prefix + server_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip()
        before = cpu_seconds(server.pid)
        client = subprocess.Popen(prefix + [arg.replace("PORT", port) for arg in client_cmd], stdout=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(client.pid, 0)
        output = client.stdout.read()
        if status != 0:
            sys.exit("client failed: %s" % output)
        server_cpu = cpu_seconds(server.pid) - before
    finally:
        server.stdin.close()
        server.terminate()
        server.wait()
    calls, seconds, p50, p99 = output.split()
    calls, seconds = int(calls), float(seconds)
    client_cpu = usage.ru_utime + usage.ru_stime
    return {
        "rate": calls / seconds,
        "p50": float(p50),
        "p99": float(p99),
        "cpu": (server_cpu + client_cpu) / calls * 1e6,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rekey", required=True, help="the RekeyBenchmark executable (release build)")
    parser.add_argument("--c", required=True, help="the pingpong executable")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--reset-token", help="the rekey-reset-token executable (release build), for the token benchmark")
    parser.add_argument("--handshakes", type=int, default=300, help="new connections for the handshake rows")
    args = parser.parse_args()

    size = subprocess.run([args.rekey, "frame-size"], check=True, capture_output=True, text=True).stdout.strip()
    scenarios = [
        ("1 connection, sequential, both ends on CPU 0", 1, True),
        ("8 concurrent callers", 8, False),
        ("64 concurrent callers", 64, False),
    ]
    print("Request frame: %s bytes of envelope (~100-byte message inside); %g s per run." % (size, args.seconds))
    print("C and NIO bare: one connection per caller. Rekey: all callers share one multiplexed connection.")
    print()
    certificates = tempfile.mkdtemp(prefix="rekey-bench-certs-")
    subprocess.run([args.rekey, "make-certs", certificates], check=True)
    implementations = [
        ("C epoll", [args.c, "epoll-server"], [args.c, "epoll-client", "PORT", size, "CALLERS", "SECONDS"]),
        ("C blocking", [args.c, "server"], [args.c, "client", "PORT", size, "CALLERS", "SECONDS"]),
        ("NIO bare", [args.rekey, "nio-server"], [args.rekey, "nio-client", "PORT", "CALLERS", "SECONDS"]),
        ("Rekey", [args.rekey, "server"], [args.rekey, "client", "PORT", "CALLERS", "SECONDS"]),
        ("Rekey mTLS", [args.rekey, "server", "--tls", certificates], [args.rekey, "client", "PORT", "CALLERS", "SECONDS", "--tls", certificates]),
    ]
    header = "%-46s %-11s %10s %9s %9s %11s %8s" % ("scenario", "impl", "calls/s", "p50 µs", "p99 µs", "CPU µs/call", "vs epoll")
    print(header)
    print("-" * len(header))
    summary = []
    for name, callers, pin in scenarios:
        results = {}
        for impl, server_cmd, client_cmd in implementations:
            client = [str(callers) if arg == "CALLERS" else str(args.seconds) if arg == "SECONDS" else arg for arg in client_cmd]
            results[impl] = run(server_cmd, client, pin)
        for impl, _, _ in implementations:
            figures = results[impl]
            print("%-46s %-11s %10.0f %9.1f %9.1f %11.1f %8.2f" % (
                name if impl == "C epoll" else "", impl, figures["rate"], figures["p50"], figures["p99"], figures["cpu"],
                figures["rate"] / results["C epoll"]["rate"]))
        summary.append((name, results["Rekey"]["rate"] / results["NIO bare"]["rate"], results["Rekey mTLS"]["rate"] / results["Rekey"]["rate"]))
    print()
    for name, versus_nio, tls in summary:
        print("%-46s Rekey / NIO bare %.2f   Rekey mTLS / Rekey %.2f" % (name, versus_nio, tls))
    print()
    print("A new connection and one call, one after the other (%d of each), unpinned:" % args.handshakes)
    header = "%-24s %10s %11s %11s" % ("", "per second", "p50 µs", "p99 µs")
    print(header)
    print("-" * len(header))
    for label, extra in (("plaintext connect", []), ("mTLS full handshake", ["--tls", certificates])):
        figures = run([args.rekey, "server"] + extra, [args.rekey, "handshakes", "PORT", str(args.handshakes)] + extra, False)
        print("%-24s %10.0f %11.1f %11.1f" % (label, figures["rate"], figures["p50"], figures["p99"]))
    shutil.rmtree(certificates)
    if args.reset_token:
        print()
        tokens_benchmark(args)
    return 0


def tokens_benchmark(args):
    """Issue + redeem pairs through the RPC against the real service, with its durable database."""
    credential = "benchmark-credential-0123456789abcdef"
    print("rekey-reset-token: issue + redeem pairs through the RPC (WAL, synchronous=NORMAL), unpinned.")
    header = "%-22s %10s %11s %11s %12s" % ("callers", "pairs/s", "p50 µs", "p99 µs", "CPU µs/pair")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as data:
        for callers in (1, 16, 64):
            server_cmd = [args.reset_token, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data-dir", data,
                          "--limit-per-user", "100000"]
            env = dict(os.environ, REKEY_RESET_TOKEN_CREDENTIALS=credential, REKEY_RESET_TOKEN_TLS="off")
            server = subprocess.Popen(server_cmd, stderr=subprocess.PIPE, text=True, env=env)
            try:
                port = None
                while port is None:
                    line = server.stderr.readline()
                    if not line:
                        sys.exit("rekey-reset-token did not start")
                    match = re.search(r"rpc\.port=(\d+)", line)
                    port = match.group(1) if match else None
                before = cpu_seconds(server.pid)
                client = subprocess.Popen([args.rekey, "tokens", port, credential, str(callers), str(args.seconds)],
                                          stdout=subprocess.PIPE, text=True)
                _, status, usage = os.wait4(client.pid, 0)
                output = client.stdout.read()
                if status != 0:
                    sys.exit("token client failed: %s" % output)
                server_cpu = cpu_seconds(server.pid) - before
            finally:
                server.terminate()
                server.wait()
            pairs, seconds, p50, p99 = output.split()
            pairs = int(pairs)
            cpu = (server_cpu + usage.ru_utime + usage.ru_stime) / pairs * 1e6
            print("%-22s %10.0f %11.1f %11.1f %12.1f" % (callers, pairs / float(seconds), float(p50), float(p99), cpu))
        size = sum(os.path.getsize(os.path.join(data, name)) for name in os.listdir(data))
        print("database after the runs: %.1f MiB" % (size / 1048576))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The forgot-password benchmark (`make bench-forgot`): flows per second through the whole
chain — HTTP → gateway → directory (find the user) → reset-token (limits, issue) → notifier (commit
to the outbox, synchronous=FULL; delivery to the maildir runs alongside) — with `wrk` and 32
connections on loopback. All four release executables and the load generator share this machine.

The traffic is what a busy day looks like: 20,000 customers (imported with `rekey-directory
import`), each request for a random one of them from a random client address (`X-Forwarded-For`
through a trusted proxy), with the default rate limits. The gateway's 400 ms floor on the answer
(which hides whether an account exists) is set to 0 here, to measure the chain."""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

from forgot_postgres import WRK_SCRIPT, chain_arguments, gateway_counts
from processes import start
from tokens_postgres import free_port

CREDENTIAL = "benchmark-credential-0123456789abcdef"
NAMES = ["rekey-directory", "rekey-reset-token", "rekey-notifier", "rekey-gateway"]




def cpu_seconds(pid):
    """User plus system CPU time of a process so far, from /proc."""
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    chain_arguments(parser)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="rekey-bench-forgot-")
    env = {"REKEY_DIRECTORY_CREDENTIALS": CREDENTIAL, "REKEY_RESET_TOKEN_CREDENTIALS": CREDENTIAL,
           "REKEY_NOTIFIER_CREDENTIALS": CREDENTIAL, "REKEY_GATEWAY_SERVICE_CREDENTIAL": CREDENTIAL,
          # Plaintext RPC with the credential: these figures are for the services' own work.
          "REKEY_DIRECTORY_TLS": "off", "REKEY_RESET_TOKEN_TLS": "off", "REKEY_NOTIFIER_TLS": "off", "REKEY_GATEWAY_TLS": "off",}
    subprocess.run([args.bin + "/rekey-directory", "bootstrap-admin", "--data-dir", data, "--email", "jane@example.com",
                    "--name", "Jane Bench"], check=True, capture_output=True, text=True, env=dict(os.environ, **env))
    customers = os.path.join(data, "customers.csv")
    with open(customers, "w") as handle:
        handle.write("name,email,role\n")
        for number in range(args.users):
            handle.write("Customer %d,customer%d@example.com,customer\n" % (number, number))
    subprocess.run([args.bin + "/rekey-directory", "import", customers, "--data-dir", data], check=True, capture_output=True, text=True)
    processes = []
    try:
        for name, extra, pattern in [
            ("rekey-directory", [], r"rpc\.port=(\d+)"),
            ("rekey-reset-token", [], r"rpc\.port=(\d+)"),
            ("rekey-notifier", ["--mail-dir", data + "/mail"], r"rpc\.port=(\d+)"),
        ]:
            process, port = start([args.bin + "/" + name, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data-dir", data, "--log-level", "info"] + extra, env, pattern)
            processes.append((process, port))
        ports = [port for _, port in processes]
        metrics_port = free_port()
        gateway, gport = start([args.bin + "/rekey-gateway", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:%d" % metrics_port, "--directory", "127.0.0.1:" + ports[0],
                                "--reset-token", "127.0.0.1:" + ports[1], "--notifier", "127.0.0.1:" + ports[2],
                                "--forgot-min-duration", args.floor, "--trusted-proxies", "127.0.0.1"], env, r"http\.port=(\d+)")
        processes.append((gateway, gport))
        base = "http://127.0.0.1:" + gport
        with urllib.request.urlopen(base + "/password/forgot") as response:
            page = response.read().decode()
            cookie = response.headers["Set-Cookie"].split(";")[0]
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        script = os.path.join(data, "post.lua")
        with open(script, "w") as handle:
            handle.write(WRK_SCRIPT % {"users": args.users, "csrf": csrf, "cookie": cookie, "seed": 0})
        before = {name: cpu_seconds(process.pid) for name, (process, _) in zip(NAMES, processes)}
        flows_before, overflow_before = gateway_counts(metrics_port)
        result = subprocess.run(["wrk", "-t2", "-c%d" % args.connections, "-d%ds" % args.seconds, "--latency", "-s", script,
                                 base + "/password/forgot"], check=True, capture_output=True, text=True).stdout
        after = {name: cpu_seconds(process.pid) for name, (process, _) in zip(NAMES, processes)}
        flows_after, overflow_after = gateway_counts(metrics_port)
        rate = re.search(r"Requests/sec:\s+([\d.]+)", result).group(1)
        # wrk's own duration (requests / rate), as bench-forgot-postgres divides by.
        elapsed = int(re.search(r"(\d+) requests in", result).group(1)) / float(rate)
        p50 = re.search(r"^\s*50%\s+(\S+)", result, re.M).group(1)
        p99 = re.search(r"^\s*99%\s+(\S+)", result, re.M).group(1)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result)
        queued = len(os.listdir(os.path.join(data, "mail", "new"))) if os.path.isdir(os.path.join(data, "mail", "new")) else 0
        # The gateway answers as soon as the flow is queued (its 400 ms floor is 0 here), so the
        # chain's throughput is the flows it finished; a full queue answers 503 at once.
        print("forgot-password, %d connections, %d s: %.0f flows/s finished; %s answers/s, p50 %s, p99 %s; non-2xx: %s (background queue full: %d); %d emails written so far"
              % (args.connections, args.seconds, (flows_after - flows_before) / elapsed, float(rate), p50, p99, errors.group(1) if errors else "0",
                 overflow_after - overflow_before, queued))
        print("CPU seconds used during the run: " + ", ".join("%s %.1f" % (name, after[name] - before[name]) for name in NAMES))
    finally:
        for process, _ in processes:
            process.terminate()
            process.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()

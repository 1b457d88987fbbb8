#!/usr/bin/env python3
"""The forgot-password chain on PostgreSQL, one and two replicas, beside SQLite (`make bench-forgot-postgres`).

The chain of `make bench-forgot` — HTTP → gateway → directory (find the user) → reset-token
(limits, issue) → notifier (commit to the outbox; delivery to a maildir runs alongside) — with
`wrk`, 32 connections, 20,000 imported customers picked at random from random client addresses,
the default rate limits and the gateway's answer floor set to 0. Three rows, each on fresh data:

  SQLite        one process of each (the baseline, in the same run);
  PostgreSQL x1 every service on PostgreSQL (schemas rekey_directory, rekey_tokens, rekey_notifier
                in one throw-away cluster with durable settings; the directory copied there with
                `migrate-to`), one replica each, one gateway;
  PostgreSQL x2 two replicas of each service and two gateways, each gateway over both replicas
                of each service, `wrk` against both gateways at once (16 connections each).

Figures: requests/s,
p50/p99, and CPU µs per request for each kind of process (replicas summed; PostgreSQL's processes
summed), since two cores cap what a second replica can add."""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request

from processes import start
from tokens_postgres import Cluster, cluster_cpu, cpu_seconds, free_port

CREDENTIAL = "benchmark-credential-0123456789abcdef"
PLAINTEXT = {
    "REKEY_DIRECTORY_CREDENTIALS": CREDENTIAL, "REKEY_RESET_TOKEN_CREDENTIALS": CREDENTIAL, "REKEY_NOTIFIER_CREDENTIALS": CREDENTIAL,
    "REKEY_GATEWAY_SERVICE_CREDENTIAL": CREDENTIAL,
    # Plaintext RPC with the credential: these figures are for the services' own work.
    "REKEY_DIRECTORY_TLS": "off", "REKEY_RESET_TOKEN_TLS": "off", "REKEY_NOTIFIER_TLS": "off", "REKEY_GATEWAY_TLS": "off",
}

# Each request: a random customer's address from a random client address.
WRK_SCRIPT = """
math.randomseed(os.time() + %(seed)d)
request = function()
  local body = "email=customer" .. math.random(0, %(users)d - 1) .. "%%40example.com&csrf=%(csrf)s"
  local headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Cookie"] = "%(cookie)s",
    ["X-Forwarded-For"] = "10." .. math.random(0, 255) .. "." .. math.random(0, 255) .. "." .. math.random(1, 254),
  }
  return wrk.format("POST", nil, headers, body)
end
"""


def gateway_counts(metrics_port):
    """Forgot-password flows the gateway finished (any outcome) and submissions it refused because
    its background queue was full, from its metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port) as response:
        text = response.read().decode()
    finished = sum(float(value) for value in re.findall(r"^rekey_gateway_forgot_password_total\{[^}]*\} (\S+)$", text, re.M))
    overflow = sum(float(value) for value in re.findall(r"^rekey_gateway_background_overflow_total(?:\{[^}]*\})? (\S+)$", text, re.M))
    return finished, overflow


def prepare_directory(binaries, users):
    """A directory store with the bench owner and `users` customers, made once and copied per row."""
    data = tempfile.mkdtemp(prefix="rekey-bench-forgot-directory-")
    subprocess.run([binaries + "/rekey-directory", "bootstrap-admin", "--data-dir", data, "--email", "jane@example.com", "--name", "Jane Bench"],
                   check=True, capture_output=True, env=dict(os.environ, **PLAINTEXT))
    customers = os.path.join(data, "customers.csv")
    with open(customers, "w") as handle:
        handle.write("name,email,role\n")
        for number in range(users):
            handle.write("Customer %d,customer%d@example.com,customer\n" % (number, number))
    subprocess.run([binaries + "/rekey-directory", "import", customers, "--data-dir", data], check=True, capture_output=True)
    os.remove(customers)
    return data


def run_row(args, directory_template, cluster, replicas, gateways):
    data = tempfile.mkdtemp(prefix="rekey-bench-forgot-postgres-")
    directory_data = os.path.join(data, "directory")
    shutil.copytree(directory_template, directory_data)
    tokens_db = cluster.new_database() if cluster else None
    notifier_db = cluster.new_database() if cluster else None
    directory_db = cluster.new_database() if cluster else None
    if directory_db:
        subprocess.run([args.bin + "/rekey-directory", "migrate-to", directory_db, "--data-dir", directory_data], check=True, capture_output=True)
    kinds = {"gateway": [], "directory": [], "reset-token": [], "notifier": []}
    try:
        # At info, as `make bench-forgot`: the readiness line is an info line.
        common = ["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "off", "--log-level", "info"]
        ready = r"rpc\.port=(\d+)"
        for index in range(replicas):
            env = dict(PLAINTEXT)
            if tokens_db:
                env.update(REKEY_RESET_TOKEN_DATABASE=tokens_db, REKEY_NOTIFIER_DATABASE=notifier_db, REKEY_DIRECTORY_DATABASE=directory_db)
            folder = os.path.join(data, "replica%d" % index)
            kinds["directory"].append(start([args.bin + "/rekey-directory"] + common + ["--data-dir", directory_data], env, ready))
            kinds["reset-token"].append(start([args.bin + "/rekey-reset-token"] + common + ["--data-dir", folder], env, ready))
            kinds["notifier"].append(start([args.bin + "/rekey-notifier"] + common + ["--data-dir", folder, "--mail-dir", folder + "/mail"], env, ready))
        lists = {kind: ",".join("127.0.0.1:" + port for _, port in kinds[kind]) for kind in ("directory", "reset-token", "notifier")}
        metrics_ports = []
        for _ in range(gateways):
            metrics_ports.append(free_port())
            kinds["gateway"].append(start(
                [args.bin + "/rekey-gateway", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:%d" % metrics_ports[-1],
                 "--directory", lists["directory"],
                 "--reset-token", lists["reset-token"], "--notifier", lists["notifier"], "--forgot-min-duration", args.floor, "--trusted-proxies", "127.0.0.1"],
                PLAINTEXT, r"http\.port=(\d+)"))

        scripts = []
        for index, (_, port) in enumerate(kinds["gateway"]):
            base = "http://127.0.0.1:" + port
            with urllib.request.urlopen(base + "/password/forgot") as response:
                page = response.read().decode()
                cookie = response.headers["Set-Cookie"].split(";")[0]
            csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
            script = os.path.join(data, "post%d.lua" % index)
            with open(script, "w") as handle:
                handle.write(WRK_SCRIPT % {"users": args.users, "csrf": csrf, "cookie": cookie, "seed": index * 7919})
            scripts.append((base, script))

        def cpu():
            figures = {kind: sum(cpu_seconds(process.pid) for process, _ in processes) for kind, processes in kinds.items()}
            figures["PostgreSQL"] = cluster_cpu(cluster.postmaster) if cluster else 0.0
            return figures

        before = cpu()
        counts_before = [gateway_counts(port) for port in metrics_ports]
        outputs = [None] * len(scripts)

        def drive(index, base, script):
            outputs[index] = subprocess.run(
                ["wrk", "-t1" if len(scripts) > 1 else "-t2", "-c%d" % (args.connections // len(scripts)), "-d%ds" % args.seconds, "--latency", "-s", script,
                 base + "/password/forgot"], check=True, capture_output=True, text=True).stdout

        threads = [threading.Thread(target=drive, args=(index, base, script)) for index, (base, script) in enumerate(scripts)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = cpu()
        counts_after = [gateway_counts(port) for port in metrics_ports]
    finally:
        for processes in kinds.values():
            for process, _ in processes:
                process.terminate()
                process.wait()
        shutil.rmtree(data, ignore_errors=True)

    def seconds(text):
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    rate = sum(float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)) for output in outputs)
    total = sum(int(re.search(r"(\d+) requests in", output).group(1)) for output in outputs)
    failed = sum(int(match.group(1)) for output in outputs for match in [re.search(r"Non-2xx or 3xx responses: (\d+)", output)] if match)
    p50 = max(seconds(re.search(r"^\s*50%\s+(\S+)", output, re.M).group(1)) for output in outputs)
    p99 = max(seconds(re.search(r"^\s*99%\s+(\S+)", output, re.M).group(1)) for output in outputs)
    finished = sum(a[0] - b[0] for a, b in zip(counts_after, counts_before))
    overflow = sum(a[1] - b[1] for a, b in zip(counts_after, counts_before))
    elapsed = total / rate if rate else float(args.seconds)
    per_flow = {kind: (after[kind] - before[kind]) / max(finished, 1) * 1e6 for kind in after}
    return {"flows": finished / elapsed, "rate": rate, "p50": p50, "p99": p99, "failed": failed, "overflow": overflow, "total": total, "cpu": per_flow}


def chain_arguments(parser):
    """The options both forgot-password benchmarks take."""
    parser.add_argument("--bin", default=".build/release")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--floor", default="0ms", help="the gateway's forgot_min_duration")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    chain_arguments(parser)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (make bench-forgot-postgres installs it)")
    template = prepare_directory(args.bin, args.users)
    cluster = Cluster()
    rows = []
    try:
        for label, use_cluster, replicas, gateways in [("SQLite", False, 1, 1), ("PostgreSQL x1", True, 1, 1), ("PostgreSQL x2", True, 2, 2)]:
            row = run_row(args, template, cluster if use_cluster else None, replicas, gateways)
            rows.append((label, row))
            print("%-14s %6.0f flows/s finished; %6.0f answers/s, p50 %5.1f ms, p99 %5.1f ms; %d of %d answered 503 (background queue full: %d)" % (
                label, row["flows"], row["rate"], row["p50"], row["p99"], row["failed"], row["total"], row["overflow"]), flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(template, ignore_errors=True)
    baseline = rows[0][1]["flows"]
    kinds = ["gateway", "directory", "reset-token", "notifier", "PostgreSQL"]
    print()
    print("| setup | flows/s | ratio to SQLite | " + " | ".join("%s µs/flow" % kind for kind in kinds) + " |")
    print("| --- | ---: | ---: | " + " | ".join("---:" for _ in kinds) + " |")
    for label, row in rows:
        print("| %s | %.0f | %.2f | %s |" % (label, row["flows"], row["flows"] / baseline, " | ".join("%.0f" % row["cpu"][kind] for kind in kinds)))


if __name__ == "__main__":
    main()

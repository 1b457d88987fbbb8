#!/usr/bin/env python3
"""rekey-notifier on PostgreSQL, one and three replicas, beside SQLite (`make bench-notifier-postgres`).

A throw-away PostgreSQL cluster of its own (as `make bench-postgres`: durable settings), then for
each row a fresh database and fresh replicas. Enqueue: `RekeyBenchmark notifier-enqueue` through
the RPC, the callers split over the replicas (one client process per replica, run at once),
delivery pointed at a closed port meanwhile. Delivery: Postfix's `smtp-sink` on loopback, 5,000
messages queued through the first replica, timed until the shared queue is empty, every replica
delivering with 4 connections. Figures: rate, and CPU µs per message in the replicas together and
in PostgreSQL's processes together (two cores cap what three replicas can add). The SQLite row of
the same run (synchronous=FULL) is the baseline.
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from tokens_postgres import Cluster, cluster_cpu, cpu_seconds, free_port

CREDENTIAL = "benchmark-credential-0123456789abcdef"


def start_replica(notifier, data, database, smtp_port):
    command = [notifier, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "off", "--data-dir", data, "--from-address", "bench@rekey.example",
               "--transport", "smtp", "--smtp-server", "127.0.0.1:%d" % smtp_port, "--retry-schedule", "1h"]
    env = dict(os.environ, REKEY_NOTIFIER_CREDENTIALS=CREDENTIAL, REKEY_NOTIFIER_TLS="off")
    if database:
        env["REKEY_NOTIFIER_DATABASE"] = database
        env["REKEY_NOTIFIER_DATABASE_POOL_SIZE"] = "20"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    for line in process.stderr:
        match = re.search(r"rpc\.port=(\d+)", line)
        if match:
            # Keep reading its log, or a full pipe would stall the service.
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, match.group(1)
    sys.exit("rekey-notifier did not start")


def with_replicas(args, cluster, replicas, smtp_port, body):
    data = tempfile.mkdtemp(prefix="rekey-bench-notifier-")
    database = cluster.new_database() if cluster else None
    processes = [start_replica(args.notifier, os.path.join(data, str(index)), database, smtp_port) for index in range(replicas)]
    try:
        before = sum(cpu_seconds(process.pid) for process, _ in processes)
        before_db = cluster_cpu(cluster.postmaster) if cluster else 0.0
        count, result = body([port for _, port in processes])
        service = (sum(cpu_seconds(process.pid) for process, _ in processes) - before) / count * 1e6
        db = ((cluster_cpu(cluster.postmaster) - before_db) / count * 1e6) if cluster else 0.0
        return result, service, db
    finally:
        for process, _ in processes:
            process.terminate()
            process.wait()
        shutil.rmtree(data, ignore_errors=True)


def enqueue(args, ports, callers):
    clients = [subprocess.Popen([args.rekey, "notifier-enqueue", port, CREDENTIAL, str(max(1, callers // len(ports))), str(args.seconds)],
                                stdout=subprocess.PIPE, text=True) for port in ports]
    calls, seconds, p99 = 0, 0.0, 0.0
    for client in clients:
        out = client.communicate()[0].split()
        if client.returncode != 0:
            sys.exit("enqueue client failed")
        calls += int(out[0])
        seconds = max(seconds, float(out[1]))
        p99 = max(p99, float(out[3]))
    return calls, (calls / seconds, p99 / 1000)


def drain(args, ports):
    out = subprocess.run([args.rekey, "notifier-drain", ports[0], CREDENTIAL, str(args.messages)], check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[0]) / float(out[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rekey", required=True, help="the RekeyBenchmark executable (release build)")
    parser.add_argument("--notifier", required=True, help="the rekey-notifier executable (release build)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()

    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    cluster = Cluster()
    rows = (("SQLite, 1 process", False, 1), ("PostgreSQL, 1 replica", True, 1), ("PostgreSQL, 3 replicas", True, 3))
    try:
        print("rekey-notifier: PostgreSQL %s with durable settings (fsync, synchronous_commit on); SQLite with synchronous=FULL."
              % os.path.basename(os.path.dirname(cluster.bin)))
        print("Enqueue through the RPC, %g s per row:" % args.seconds)
        header = "  %-26s %8s %12s %10s %12s %9s" % ("store", "callers", "enqueues/s", "p99 ms", "service µs", "db µs")
        print(header)
        for label, use_cluster, replicas in rows:
            for callers in (1, 16, 64):
                if callers < replicas:
                    continue
                (rate, p99), service, db = with_replicas(args, cluster if use_cluster else None, replicas, free_port(), lambda ports: enqueue(args, ports, callers))
                print("  %-26s %8d %12.0f %10.2f %12.1f %9.1f" % (label, callers, rate, p99, service, db), flush=True)
        if not os.path.exists(sink):
            print("smtp-sink not found (Debian package postfix); skipping the delivery rows")
            return 0
        print("Delivery to smtp-sink on loopback (%d messages, 4 connections per replica, timed until the queue is empty):" % args.messages)
        print("  %-26s %12s %12s %9s" % ("store", "messages/s", "service µs", "db µs"))
        for label, use_cluster, replicas in rows:
            smtp_port = free_port()
            as_root = ["-u", "nobody"] if os.getuid() == 0 else []
            sink_process = subprocess.Popen([sink] + as_root + ["127.0.0.1:%d" % smtp_port, "256"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)
            try:
                rate, service, db = with_replicas(args, cluster if use_cluster else None, replicas, smtp_port, lambda ports: drain(args, ports))
            finally:
                sink_process.terminate()
                sink_process.wait()
            print("  %-26s %12.0f %12.1f %9.1f" % (label, rate, service, db), flush=True)
        print("CPU columns: µs per message in the notifier process(es) together, in PostgreSQL's processes together.")
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""rekey-reset-token on PostgreSQL, one and two replicas, beside SQLite (`make bench-postgres`).

Starts a throw-away PostgreSQL cluster of its own (Debian's, `initdb` in a temporary folder, a free
loopback port, durable settings: fsync and synchronous_commit on), then for each row a fresh
database and fresh replicas, and drives issue + redeem pairs through the RPC with RekeyBenchmark
(several replicas: spread round-robin as the gateway does). Figures: pairs/s, p50/p99 per pair,
and CPU µs per pair for each process kind (the client, the replicas together, PostgreSQL's
processes together), since two cores cap what two replicas can add. The SQLite row of the same
run (WAL, synchronous=NORMAL) is the baseline.
"""

import argparse
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

TICKS = os.sysconf("SC_CLK_TCK")
CREDENTIAL = "benchmark-credential-0123456789abcdef"


def cpu_seconds(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / TICKS


def cluster_cpu(postmaster):
    """CPU of the postmaster and every backend it forked (children's time counted when reaped)."""
    total = cpu_seconds(postmaster)
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    def __init__(self):
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        if not versions:
            sys.exit("PostgreSQL is not installed (make deps installs it)")
        self.bin = os.path.dirname(versions[-1])
        self.folder = tempfile.mkdtemp(prefix="rekey-bench-postgres-")
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        with open(os.path.join(self.folder, "pwfile"), "w") as handle:
            handle.write("rekey")
        if os.getuid() == 0:
            subprocess.run(["chown", "-R", "postgres", self.folder], check=True)
        data = os.path.join(self.folder, "data")
        subprocess.run(self.as_user + [os.path.join(self.bin, "initdb"), "-D", data, "-U", "rekey", "--pwfile=" + self.folder + "/pwfile",
                                       "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True)
        self.server = subprocess.Popen(self.as_user + [os.path.join(self.bin, "postgres"), "-D", data, "-c", "listen_addresses=127.0.0.1",
                                                       "-c", "port=%d" % self.port, "-c", "unix_socket_directories=" + self.folder,
                                                       "-c", "max_connections=200"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("PostgreSQL did not start")
                time.sleep(0.1)
        # The postmaster: the `postgres` process itself (runuser forks it).
        self.postmaster = int(open(os.path.join(data, "postmaster.pid")).readline())
        self.databases = 0

    def new_database(self):
        self.databases += 1
        name = "bench_%d" % self.databases
        subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "rekey", "-d", "postgres", "-c", "CREATE DATABASE " + name],
                       check=True, env=dict(os.environ, PGPASSWORD="rekey"))
        return "postgres://rekey:rekey@127.0.0.1:%d/%s?sslmode=disable" % (self.port, name)

    def stop(self):
        subprocess.run(self.as_user + [os.path.join(self.bin, "pg_ctl"), "stop", "-D", os.path.join(self.folder, "data"), "-m", "fast", "-w"],
                       capture_output=True)
        self.server.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_replica(reset_token, data, database):
    command = [reset_token, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "off", "--data-dir", data, "--limit-per-user", "100000"]
    env = dict(os.environ, REKEY_RESET_TOKEN_CREDENTIALS=CREDENTIAL, REKEY_RESET_TOKEN_TLS="off")
    if database:
        env["REKEY_RESET_TOKEN_DATABASE"] = database
        env["REKEY_RESET_TOKEN_DATABASE_POOL_SIZE"] = "20"
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    while True:
        line = process.stderr.readline()
        if not line:
            sys.exit("rekey-reset-token did not start")
        match = re.search(r"rpc\.port=(\d+)", line)
        if match:
            return process, match.group(1)


def run_row(args, cluster, replicas, callers):
    data = tempfile.mkdtemp(prefix="rekey-bench-tokens-")
    database = cluster.new_database() if cluster else None
    processes = [start_replica(args.reset_token, os.path.join(data, str(index)), database) for index in range(replicas)]
    try:
        before_replicas = sum(cpu_seconds(process.pid) for process, _ in processes)
        before_db = cluster_cpu(cluster.postmaster) if cluster else 0.0
        client = subprocess.Popen([args.rekey, "tokens", ",".join(port for _, port in processes), CREDENTIAL, str(callers), str(args.seconds)],
                                  stdout=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(client.pid, 0)
        output = client.stdout.read()
        if status != 0:
            sys.exit("token client failed: %s" % output)
        replica_cpu = sum(cpu_seconds(process.pid) for process, _ in processes) - before_replicas
        db_cpu = (cluster_cpu(cluster.postmaster) - before_db) if cluster else 0.0
    finally:
        for process, _ in processes:
            process.terminate()
            process.wait()
        shutil.rmtree(data, ignore_errors=True)
    pairs, seconds, p50, p99 = output.split()
    pairs = int(pairs)
    client_cpu = usage.ru_utime + usage.ru_stime
    return {
        "rate": pairs / float(seconds), "p50": float(p50), "p99": float(p99),
        "client": client_cpu / pairs * 1e6, "replicas": replica_cpu / pairs * 1e6, "db": db_cpu / pairs * 1e6,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rekey", required=True, help="the RekeyBenchmark executable (release build)")
    parser.add_argument("--reset-token", required=True, help="the rekey-reset-token executable (release build)")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    cluster = Cluster()
    try:
        print("rekey-reset-token: issue + redeem pairs through the RPC, unpinned, %g s per row." % args.seconds)
        print("PostgreSQL %s with durable settings (fsync, synchronous_commit on); SQLite in WAL with synchronous=NORMAL."
              % os.path.basename(os.path.dirname(cluster.bin)))
        header = "%-34s %9s %9s %10s %11s %12s %11s %9s" % ("store", "callers", "pairs/s", "p50 µs", "p99 µs", "client µs", "service µs", "db µs")
        print(header)
        print("-" * len(header))
        for label, use_cluster, replicas in (("SQLite, 1 process", False, 1), ("PostgreSQL, 1 replica", True, 1), ("PostgreSQL, 2 replicas", True, 2)):
            for callers in (1, 16, 64):
                row = run_row(args, cluster if use_cluster else None, replicas, callers)
                print("%-34s %9d %9.0f %10.1f %11.1f %12.1f %11.1f %9.1f"
                      % (label, callers, row["rate"], row["p50"], row["p99"], row["client"], row["replicas"], row["db"]), flush=True)
        print("CPU columns: µs per pair in the client, in the reset-token process(es) together, in PostgreSQL's processes together.")
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

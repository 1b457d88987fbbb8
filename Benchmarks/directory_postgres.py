#!/usr/bin/env python3
"""The directory on PostgreSQL beside SQLite (`make bench-directory-postgres`): the 1,000,000-user
directory of `make bench-directory` (imported first when missing) copied into a throw-away
PostgreSQL cluster with `rekey-directory migrate-to`, then search and find-by-email latency through
the RPC, one caller, against `rekey-directory` on SQLite and on PostgreSQL in the same run.

Figures: the copy's time, the database sizes, p50/p99 per query class on each backend and their
ratio (PostgreSQL over SQLite, lower is better), the service's CPU per query on each.
"""

import argparse
import os
import subprocess
import time

from directory import CREDENTIAL, ensure_directory, serve
from tokens_postgres import Cluster, cluster_cpu, cpu_seconds


def run_rpc(rekey, port, database, queries):
    """`RekeyBenchmark directory-rpc`: {class: (count, p50 µs, p99 µs, extra)}."""
    output = subprocess.run([rekey, "directory-rpc", port, CREDENTIAL, database, str(queries)], check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in output.strip().splitlines():
        fields = line.split()
        rows[fields[0]] = (int(fields[1]), float(fields[2]), float(fields[3]), " ".join(fields[4:]))
    return rows


def measure(args, data, database, environment, cluster=None):
    service, port = serve(args.directory, data, environment)
    try:
        before = cpu_seconds(service.pid) + (cluster_cpu(cluster.postmaster) if cluster else 0)
        started = time.monotonic()
        rows = run_rpc(args.rekey, port, database, args.queries)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(service.pid) + (cluster_cpu(cluster.postmaster) if cluster else 0) - before
    finally:
        service.terminate()
        service.wait()
    calls = sum(count for count, _, _, _ in rows.values())
    return rows, cpu / calls * 1e6, elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", required=True, help="the rekey-directory executable (release build)")
    parser.add_argument("--rekey", required=True, help="the RekeyBenchmark executable (release build)")
    parser.add_argument("--folder", default=".build/bench-directory")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()

    data = ensure_directory(args.directory, args.folder, args.users, False)
    database = os.path.join(data, "directory.sqlite")
    cluster = Cluster()
    try:
        url = cluster.new_database()
        started = time.monotonic()
        copy = subprocess.run([args.directory, "migrate-to", url, "--data-dir", data], capture_output=True, text=True)
        if copy.returncode != 0:
            raise SystemExit(copy.stdout + copy.stderr)
        copy_seconds = time.monotonic() - started
        subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "rekey", "-d", url.rsplit("/", 1)[1].split("?")[0],
                        "-c", "VACUUM ANALYZE"], check=True, env=dict(os.environ, PGPASSWORD="rekey"))
        size = subprocess.run(["psql", "-At", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "rekey", "-d", url.rsplit("/", 1)[1].split("?")[0],
                               "-c", "SELECT pg_database_size(current_database())"], check=True, capture_output=True, text=True,
                              env=dict(os.environ, PGPASSWORD="rekey")).stdout.strip()
        sqlite_size = sum(os.path.getsize(os.path.join(data, name)) for name in os.listdir(data))
        print("%d users copied into PostgreSQL with migrate-to in %.0f s (%s)" % (args.users, copy_seconds, copy.stdout.strip().split(" from ")[0]))
        print("Database size: SQLite %.0f MiB, PostgreSQL %.0f MiB" % (sqlite_size / 1048576, int(size) / 1048576))

        sqlite_rows, sqlite_cpu, _ = measure(args, data, database, {})
        postgres_rows, postgres_cpu, _ = measure(args, data, database, {"REKEY_DIRECTORY_DATABASE": url}, cluster)
    finally:
        cluster.stop()

    print("Through the RPC, one caller, %d queries per class (µs):" % args.queries)
    print("  %-28s %10s %10s %10s %10s %8s" % ("query", "SQLite p50", "p99", "PG p50", "p99", "PG/SQLite p99"))
    for name, (count, p50, p99, _) in sqlite_rows.items():
        _, pg50, pg99, _ = postgres_rows[name]
        print("  %-28s %10.0f %10.0f %10.0f %10.0f %8.2f" % (name, p50, p99, pg50, pg99, pg99 / p99))
    print("CPU per query, the service (and PostgreSQL's processes): SQLite %.0f µs, PostgreSQL %.0f µs" % (sqlite_cpu, postgres_cpu))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The diagnosis benchmark (`make bench-diagnose`): the time `GET /api/admin/v1/diagnosis` takes
for a user with 1,000 reset emails and 1,000 tokens in the window, with the 1,000,000-user
directory of `make bench-directory` (run that first). All four release executables run on this
machine; the requests are made one after the other."""

import argparse
import os
import sqlite3
import sys
import tempfile
import time

from processes import admin_call, bench_owner_key, send_resets, start_system, stop


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=".build/release")
    parser.add_argument("--directory-data", default=".build/bench-directory/data")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    database = os.path.join(args.directory_data, "directory.sqlite")
    if not os.path.exists(database):
        sys.exit("run `make bench-directory` first: it builds the 1,000,000-user directory this uses")
    users = sqlite3.connect(database).execute("SELECT count(*) FROM users").fetchone()[0]
    key = bench_owner_key(args.bin, args.directory_data)
    address = sqlite3.connect(database).execute("SELECT address FROM emails WHERE address LIKE '%.500000@%'").fetchone()[0]

    processes = []
    try:
        base = start_system(args.bin, args.directory_data, tempfile.mkdtemp(prefix="rekey-bench-diagnose-"), processes)
        user, seconds = send_resets(base, key, address, args.messages)
        print("%d users in the directory; %d reset emails (token + message each) sent to %s in %.1f s" % (users, args.messages, user, seconds))
        latencies = []
        for _ in range(args.requests):
            began = time.monotonic()
            report = admin_call(base, key, "GET", "/diagnosis?user=%s&since=7d" % address)
            latencies.append((time.monotonic() - began) * 1000)
        latencies.sort()
        print("diagnosis over HTTP, %d requests: p50 %.1f ms, p99 %.1f ms (findings: %s; %d messages and %d tokens in the report)"
              % (len(latencies), latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)],
                 ", ".join(f["code"] for f in report["findings"]), len(report["messages"]), len(report["tokens"])))
    finally:
        stop(processes)


if __name__ == "__main__":
    main()

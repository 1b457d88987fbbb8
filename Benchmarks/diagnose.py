#!/usr/bin/env python3
"""The diagnosis benchmark (`make bench-diagnose`): the time `GET /api/admin/v1/diagnosis` takes
for a user with 1,000 reset emails and 1,000 tokens in the window, with the 1,000,000-user
directory of `make bench-directory` (run that first). All four release executables run on this
machine; the requests are made one after the other."""

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

from processes import start

CREDENTIAL = "benchmark-credential-0123456789abcdef"


def call(base, key, method, path):
    request = urllib.request.Request(base + "/api/admin/v1" + path, method=method, headers={"Authorization": "Bearer " + key})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


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
    key_file = os.path.join(args.directory_data, "bench-admin-key")
    if not os.path.exists(key_file):
        out = subprocess.run([args.bin + "/rekey-directory", "bootstrap-admin", "--data-dir", args.directory_data,
                              "--email", "bench-owner@example.com", "--name", "Bench Owner"], check=True, capture_output=True, text=True).stdout
        with open(key_file, "w") as handle:
            handle.write(out.strip().split()[-1])
    key = open(key_file).read().strip()
    address = sqlite3.connect(database).execute("SELECT address FROM emails WHERE address LIKE '%.500000@%'").fetchone()[0]

    scratch = tempfile.mkdtemp(prefix="rekey-bench-diagnose-")
    env = {"REKEY_DIRECTORY_CREDENTIALS": CREDENTIAL, "REKEY_RESET_TOKEN_CREDENTIALS": CREDENTIAL,
           "REKEY_NOTIFIER_CREDENTIALS": CREDENTIAL, "REKEY_GATEWAY_SERVICE_CREDENTIAL": CREDENTIAL}
    processes = []
    try:
        directory, dport = start([args.bin + "/rekey-directory", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data-dir", args.directory_data], env, r"rpc\.port=(\d+)")
        processes.append(directory)
        tokens, tport = start([args.bin + "/rekey-reset-token", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data-dir", scratch,
                               "--limit-per-user", "100000", "--limit-per-admin", "1000000"], env, r"rpc\.port=(\d+)")
        processes.append(tokens)
        notifier, nport = start([args.bin + "/rekey-notifier", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data-dir", scratch,
                                 "--mail-dir", scratch + "/mail"], env, r"rpc\.port=(\d+)")
        processes.append(notifier)
        gateway, gport = start([args.bin + "/rekey-gateway", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--directory", "127.0.0.1:" + dport,
                                "--reset-token", "127.0.0.1:" + tport, "--notifier", "127.0.0.1:" + nport], env, r"http\.port=(\d+)")
        processes.append(gateway)
        base = "http://127.0.0.1:" + gport
        user = call(base, key, "GET", "/users/lookup?email=" + address)["user"]["id"]
        started = time.monotonic()
        for _ in range(args.messages):
            call(base, key, "POST", "/users/%s/password-reset" % user)
        print("%d users in the directory; %d reset emails (token + message each) sent to %s in %.1f s"
              % (users, args.messages, user, time.monotonic() - started))
        latencies = []
        for _ in range(args.requests):
            began = time.monotonic()
            report = call(base, key, "GET", "/diagnosis?user=%s&since=7d" % address)
            latencies.append((time.monotonic() - began) * 1000)
        latencies.sort()
        print("diagnosis over HTTP, %d requests: p50 %.1f ms, p99 %.1f ms (findings: %s; %d messages and %d tokens in the report)"
              % (len(latencies), latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)],
                 ", ".join(f["code"] for f in report["findings"]), len(report["messages"]), len(report["tokens"])))
    finally:
        for process in processes:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()

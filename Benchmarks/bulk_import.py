#!/usr/bin/env python3
"""The import benchmark (`make bench-import`): a 100,000-row CSV (about 5 MB) imported through the
admin API — HTTP → gateway → the directory's staged import (chunks of 512 KiB, then one
all-or-nothing commit) — against the baseline of the same file imported offline by
`rekey-directory import` on the database directly, in the same run on the same machine.

While the import through the API runs, a second client keeps looking users up through the API
(by address, and a search): the look-ups' times during the import, against the same look-ups with
the system idle just before, show whether the import holds up the directory's reads."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from processes import start

CREDENTIAL = "benchmark-credential-0123456789abcdef"


def write_csv(path, rows, prefix):
    with open(path, "w") as handle:
        handle.write("name,email,role\n")
        for number in range(rows):
            handle.write("Person %d,%s%d@import.example,customer\n" % (number, prefix, number))


def look_ups(gport, key, until, pause=0.05):
    """Looks a user up by address, then searches, over and over until `until()` is true: the
    times in ms of the calls that answered, and the number that failed."""
    times, failed = [], 0
    paths = ["/api/admin/v1/users/owner%40example.com", "/api/admin/v1/users/search?scope=all&q=olive"]
    while not until():
        for path in paths:
            request = urllib.request.Request("http://127.0.0.1:%s%s" % (gport, path), headers={"Authorization": "Bearer " + key})
            started = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    response.read()
                times.append((time.monotonic() - started) * 1000)
            except (urllib.error.URLError, OSError):
                failed += 1
        time.sleep(pause)
    return times, failed


def summary(times, failed):
    if not times:
        return "no answers, %d failed" % failed
    ordered = sorted(times)
    return "%d answered, p50 %.1f ms, max %.1f ms, %d failed" % (len(ordered), ordered[len(ordered) // 2], ordered[-1], failed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=".build/release")
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    env = {"REKEY_DIRECTORY_CREDENTIALS": CREDENTIAL, "REKEY_RESET_TOKEN_CREDENTIALS": CREDENTIAL,
           "REKEY_NOTIFIER_CREDENTIALS": CREDENTIAL, "REKEY_GATEWAY_SERVICE_CREDENTIAL": CREDENTIAL,
          # Plaintext RPC with the credential: these figures are for the services' own work.
          "REKEY_DIRECTORY_TLS": "off", "REKEY_RESET_TOKEN_TLS": "off", "REKEY_NOTIFIER_TLS": "off", "REKEY_GATEWAY_TLS": "off",}

    # Baseline: offline, in-process, on a fresh database.
    offline = tempfile.mkdtemp(prefix="rekey-bench-import-offline-")
    baseline_file = os.path.join(offline, "people.csv")
    write_csv(baseline_file, args.rows, "b")
    started = time.monotonic()
    subprocess.run([args.bin + "/rekey-directory", "import", baseline_file, "--data-dir", offline], check=True, capture_output=True, text=True)
    baseline = time.monotonic() - started

    data = tempfile.mkdtemp(prefix="rekey-bench-import-")
    created = subprocess.run([args.bin + "/rekey-directory", "bootstrap-admin", "--data-dir", data, "--email", "owner@example.com",
                              "--name", "Olive Owner"], check=True, capture_output=True, text=True, env=dict(os.environ, **env))
    key = created.stdout.split()[-1]
    csv_file = os.path.join(data, "people.csv")
    write_csv(csv_file, args.rows, "a")
    size = os.path.getsize(csv_file)
    processes = []
    try:
        ports = []
        for name, extra in [("rekey-directory", []), ("rekey-reset-token", []), ("rekey-notifier", ["--mail-dir", data + "/mail"])]:
            process, port = start([args.bin + "/" + name, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                                   "--data-dir", data] + extra, env, r"rpc\.port=(\d+)")
            processes.append(process)
            ports.append(port)
        gateway, gport = start([args.bin + "/rekey-gateway", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                                "--directory", "127.0.0.1:" + ports[0], "--reset-token", "127.0.0.1:" + ports[1],
                                "--notifier", "127.0.0.1:" + ports[2]], env, r"http\.port=(\d+)")
        processes.append(gateway)
        with open(csv_file, "rb") as handle:
            body = handle.read()
        request = urllib.request.Request("http://127.0.0.1:%s/api/admin/v1/users/import" % gport, data=body, method="POST",
                                         headers={"Authorization": "Bearer " + key, "Content-Type": "text/csv"})
        # The same look-ups, first with the system idle (the baseline), then during the import.
        idle_until = time.monotonic() + 3
        idle = look_ups(gport, key, lambda: time.monotonic() > idle_until)
        done = threading.Event()
        during = {}
        watcher = threading.Thread(target=lambda: during.update(result=look_ups(gport, key, done.is_set)))
        started = time.monotonic()
        watcher.start()
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                report = json.loads(response.read())
        finally:
            done.set()
            watcher.join()
        elapsed = time.monotonic() - started
        if not report.get("committed") or report.get("created") != args.rows:
            sys.exit("the import did not commit every row: %s" % {k: report.get(k) for k in ("committed", "created", "refused")})
        print("import of %d rows (%.1f MB): admin API %.2f s (%d rows/s); offline rekey-directory import %.2f s (%d rows/s); ratio %.2f"
              % (args.rows, size / 1e6, elapsed, args.rows / elapsed, baseline, args.rows / baseline, baseline / elapsed))
        print("look-ups through the API (by address, and a search), idle: %s" % summary(*idle))
        print("the same during the import: %s" % summary(*during["result"]))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait()


if __name__ == "__main__":
    main()

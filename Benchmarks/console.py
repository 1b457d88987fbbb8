#!/usr/bin/env python3
"""The admin console benchmark (`make bench-console`): with the 1,000,000-user directory of
`make bench-directory` (run that first) and all four release executables on this machine,

1. a directory filter keystroke: `GET /console/directory/results?q=…` for 1-3 letter prefixes,
   one request after the other, p50/p99 at the client (an upper bound of the server's time);
2. the user page of a user with 1,000 reset emails (and tokens): `GET /console/users/{id}`;
3. console pages per second with `wrk` (32 connections): the directory filtered, an ordinary
   user's page, the mail health page; and `/healthz` in the same run as the baseline (the HTTP
   stack doing nothing), so the figures come with their ratio to it.

The staff session is written into the directory's database before it starts (the bench owner has
no password to sign in with); everything measured goes through the real sign-on session check.
"""

import argparse
import base64
import hashlib
import os
import random
import re
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

from processes import bench_owner_key, send_resets, start_system, stop


def page(base, cookie, path):
    request = urllib.request.Request(base + path, headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=60) as response:
        if response.status != 200 or "/console" not in response.url:
            sys.exit("%s answered %d at %s" % (path, response.status, response.url))
        return response.read()


def timed(base, cookie, paths):
    latencies = []
    for path in paths:
        began = time.monotonic()
        page(base, cookie, path)
        latencies.append((time.monotonic() - began) * 1000)
    latencies.sort()
    return latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


def wrk(url, cookie, seconds, connections):
    result = subprocess.run(["wrk", "-t2", "-c%d" % connections, "-d%ds" % seconds, "--latency", "-H", "Cookie: " + cookie, url],
                            check=True, capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", result).group(1))
    p99 = re.search(r"^\s*99%\s+(\S+)", result, re.M).group(1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result)
    return rate, p99, int(errors.group(1)) if errors else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", default=".build/release")
    parser.add_argument("--directory-data", default=".build/bench-directory/data")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    database = os.path.join(args.directory_data, "directory.sqlite")
    if not os.path.exists(database):
        sys.exit("run `make bench-directory` first: it builds the 1,000,000-user directory this uses")
    key = bench_owner_key(args.bin, args.directory_data)
    with sqlite3.connect(database) as db:
        users = db.execute("SELECT count(*) FROM users").fetchone()[0]
        owner = db.execute("SELECT user_id FROM emails WHERE address = 'bench-owner@example.com'").fetchone()[0]
        busy = db.execute("SELECT address FROM emails WHERE address LIKE '%.500000@%'").fetchone()[0]
        ordinary = db.execute("SELECT user_id FROM emails WHERE address LIKE '%.400000@%'").fetchone()[0]
        # A sign-on session for the owner, as CreateSession makes it: 32 random bytes, stored as
        # the SHA-256 of the token's text.
        token = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        now = int(time.time() * 1000)
        db.execute("INSERT INTO sessions (id, user_id, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                   ("s_bench" + secrets.token_hex(8), owner, hashlib.sha256(token.encode()).digest(), now, now + 3 * 3600 * 1000))
    cookie = "rekey_session=" + token

    processes = []
    try:
        base = start_system(args.bin, args.directory_data, tempfile.mkdtemp(prefix="rekey-bench-console-"), processes)
        user, seconds = send_resets(base, key, busy, args.messages)
        print("%d users in the directory; %d reset emails (token + message each) sent to %s in %.1f s" % (users, args.messages, user, seconds))
        page(base, cookie, "/console")  # the session works

        rng = random.Random(7)
        letters = "abcdefghijklmnoprstw"
        prefixes = [rng.choice(letters) + "".join(rng.choice("aeiou" + letters) for _ in range(rng.randint(0, 2))) for _ in range(args.requests)]
        p50, p99 = timed(base, cookie, ["/console/directory/results?q=" + q for q in prefixes])
        print("directory keystroke (1-3 letters, staff at 1M users), %d requests one after the other: p50 %.1f ms, p99 %.1f ms" % (len(prefixes), p50, p99))
        html = page(base, cookie, "/console/users/" + user).decode()
        p50, p99 = timed(base, cookie, ["/console/users/" + user] * (args.requests // 2))
        print("user page of a user with %d messages (%d timeline entries shown), %d requests: p50 %.1f ms, p99 %.1f ms"
              % (args.messages, html.count("<li><time"), args.requests // 2, p50, p99))

        baseline, baseline_p99, _ = wrk(base + "/healthz", cookie, args.seconds, args.connections)
        print("wrk, %d connections, %d s each (ratio to /healthz in the same run, %.0f/s, p99 %s):" % (args.connections, args.seconds, baseline, baseline_p99))
        for name, path in [("directory filtered by 'ja'", "/console?q=ja"), ("an ordinary user's page", "/console/users/" + ordinary),
                           ("mail health", "/console/health"), ("all users, first page", "/console/users")]:
            rate, p99, errors = wrk(base + path, cookie, args.seconds, args.connections)
            print("  %-28s %7.0f pages/s  p99 %-8s ratio %.2f  non-2xx %d" % (name, rate, p99, rate / baseline, errors))
    finally:
        stop(processes)


if __name__ == "__main__":
    main()

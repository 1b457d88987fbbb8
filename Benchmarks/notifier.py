#!/usr/bin/env python3
"""The notifier benchmark (`make bench-notifier`): Enqueue through the RPC (each answer after the
commit, synchronous=FULL) at 1, 16 and 64 callers; then messages delivered per second to Postfix's
`smtp-sink` on loopback (connection reuse, 4 and 16 connections), unsigned and DKIM-signed with a
2048-bit RSA and an Ed25519 key, each against the unsigned run of the same window."""

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

CREDENTIAL = "benchmark-credential-0123456789abcdef"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_notifier(notifier, data, extra):
    process = subprocess.Popen(
        [notifier, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data-dir", data, "--from-address", "bench@rekey.example"] + extra,
        env=dict(os.environ, REKEY_NOTIFIER_CREDENTIALS=CREDENTIAL, REKEY_NOTIFIER_TLS="off"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    for line in process.stderr:
        match = re.search(r"rpc\.port=(\d+)", line)
        if match:
            # Keep reading its log, or a full pipe would stall the service.
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, match.group(1)
    sys.exit("rekey-notifier did not start")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifier", required=True)
    parser.add_argument("--rekey", required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()

    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    print("Enqueue through the RPC (the answer comes after the commit):")
    print("  %8s %12s %10s %10s" % ("callers", "enqueues/s", "p50 ms", "p99 ms"))
    for callers in (1, 16, 64):
        data = tempfile.mkdtemp(prefix="rekey-bench-notifier-")
        # Delivery goes to a port nobody listens on, so it stays out of the way (deferred).
        process, port = start_notifier(args.notifier, data, ["--transport", "smtp", "--smtp-server", "127.0.0.1:%d" % free_port(), "--retry-schedule", "1h"])
        try:
            out = subprocess.run([args.rekey, "notifier-enqueue", port, CREDENTIAL, str(callers), str(args.seconds)], check=True, capture_output=True, text=True).stdout.split()
            calls, seconds, p50, p99 = int(out[0]), float(out[1]), float(out[2]), float(out[3])
            print("  %8d %12.0f %10.2f %10.2f" % (callers, calls / seconds, p50 / 1000, p99 / 1000))
        finally:
            process.terminate()
            process.wait()
            shutil.rmtree(data)

    if not os.path.exists(sink):
        print("smtp-sink not found (Debian package postfix); skipping the delivery benchmark")
        return
    keys = tempfile.mkdtemp(prefix="rekey-bench-dkim-")
    signing = [("unsigned", [])]
    for algorithm, selector in (("rsa", "r1"), ("ed25519", "e1")):
        key = os.path.join(keys, algorithm + ".pem")
        subprocess.run([args.notifier, "dkim", "keygen", "--algorithm", algorithm, "--out", key, "--selector", selector, "--domain", "rekey.example"],
                       check=True, capture_output=True)
        signing.append(({"rsa": "rsa-sha256 2048", "ed25519": "ed25519-sha256"}[algorithm], ["--dkim-key", key, "--dkim-selector", selector]))
    print("Delivery to smtp-sink on loopback (%d messages queued by 32 callers, timed until the queue is empty):" % args.messages)
    print("  %12s %16s %12s %12s" % ("connections", "DKIM", "messages/s", "vs unsigned"))
    for connections in (4, 16):
        unsigned = None
        for name, extra in signing:
            rate = deliver(args, sink, connections, extra)
            unsigned = unsigned or rate
            print("  %12d %16s %12.0f %11.2fx" % (connections, name, rate, rate / unsigned))
    shutil.rmtree(keys)


def deliver(args, sink, connections, extra):
    """Messages/s delivered to a fresh smtp-sink by a fresh notifier with `connections` workers."""
    data = tempfile.mkdtemp(prefix="rekey-bench-notifier-")
    smtp_port = free_port()
    as_root = ["-u", "nobody"] if os.getuid() == 0 else []
    sink_process = subprocess.Popen([sink] + as_root + ["127.0.0.1:%d" % smtp_port, "256"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    if sink_process.poll() is not None:
        sys.exit("smtp-sink did not start")
    process, port = start_notifier(args.notifier, data, ["--transport", "smtp", "--smtp-server", "127.0.0.1:%d" % smtp_port, "--concurrency", str(connections)] + extra)
    try:
        out = subprocess.run([args.rekey, "notifier-drain", port, CREDENTIAL, str(args.messages)], check=True, capture_output=True, text=True).stdout.split()
        count, seconds = int(out[0]), float(out[1])
        return count / seconds
    finally:
        process.terminate()
        process.wait()
        sink_process.terminate()
        sink_process.wait()
        shutil.rmtree(data)

if __name__ == "__main__":
    main()

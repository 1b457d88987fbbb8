"""What the benchmark drivers share: starting a Rekey executable and learning its port."""

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request


def start(command, env, pattern):
    """Starts `command` with `env` added, waits for a log line matching `pattern` (whose group 1 is
    the port), keeps draining its log so that a full pipe never stalls it, and returns (process, port)."""
    process = subprocess.Popen(command, env=dict(os.environ, **env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        match = re.search(pattern, line)
        if match:
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, match.group(1)
    sys.exit("%s did not start" % command[0])


CREDENTIAL = "benchmark-credential-0123456789abcdef"


def admin_call(base, key, method, path):
    """One admin API call with the bench owner's key; the decoded JSON answer."""
    request = urllib.request.Request(base + "/api/admin/v1" + path, method=method, headers={"Authorization": "Bearer " + key})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def bench_owner_key(binaries, directory_data):
    """The API key of the bench owner in `make bench-directory`'s directory, made on first use."""
    key_file = os.path.join(directory_data, "bench-admin-key")
    if not os.path.exists(key_file):
        out = subprocess.run([binaries + "/rekey-directory", "bootstrap-admin", "--data-dir", directory_data,
                              "--email", "bench-owner@example.com", "--name", "Bench Owner"], check=True, capture_output=True, text=True).stdout
        with open(key_file, "w") as handle:
            handle.write(out.strip().split()[-1])
    return open(key_file).read().strip()


def start_system(binaries, directory_data, scratch, processes):
    """The four release executables on loopback: the directory on `directory_data`, a fresh
    reset-token and notifier (maildir) in `scratch`, rate limits raised for one busy user. Each
    process is appended to `processes` as it starts (the caller stops them); returns the gateway's
    base URL."""
    env = {"REKEY_DIRECTORY_CREDENTIALS": CREDENTIAL, "REKEY_RESET_TOKEN_CREDENTIALS": CREDENTIAL,
           "REKEY_NOTIFIER_CREDENTIALS": CREDENTIAL, "REKEY_GATEWAY_SERVICE_CREDENTIAL": CREDENTIAL,
          # Plaintext RPC with the credential: these figures are for the services' own work.
          "REKEY_DIRECTORY_TLS": "off", "REKEY_RESET_TOKEN_TLS": "off", "REKEY_NOTIFIER_TLS": "off", "REKEY_GATEWAY_TLS": "off",}
    metrics = ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]
    directory, dport = start([binaries + "/rekey-directory", "serve", *metrics, "--data-dir", directory_data], env, r"rpc\.port=(\d+)")
    processes.append(directory)
    tokens, tport = start([binaries + "/rekey-reset-token", "serve", *metrics, "--data-dir", scratch,
                           "--limit-per-user", "100000", "--limit-per-admin", "1000000"], env, r"rpc\.port=(\d+)")
    processes.append(tokens)
    notifier, nport = start([binaries + "/rekey-notifier", "serve", *metrics, "--data-dir", scratch, "--mail-dir", scratch + "/mail"], env, r"rpc\.port=(\d+)")
    processes.append(notifier)
    gateway, gport = start([binaries + "/rekey-gateway", "serve", *metrics, "--directory", "127.0.0.1:" + dport,
                            "--reset-token", "127.0.0.1:" + tport, "--notifier", "127.0.0.1:" + nport], env, r"http\.port=(\d+)")
    processes.append(gateway)
    return "http://127.0.0.1:" + gport


def send_resets(base, key, address, count):
    """`count` password-reset sends through the admin API to the user with `address`; the user's
    id and the seconds it took."""
    user = admin_call(base, key, "GET", "/users/lookup?email=" + address)["user"]["id"]
    started = time.monotonic()
    for _ in range(count):
        admin_call(base, key, "POST", "/users/%s/password-reset" % user)
    return user, time.monotonic() - started


def stop(processes):
    for process in processes:
        process.terminate()
        process.wait()

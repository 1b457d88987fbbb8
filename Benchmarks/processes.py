"""What the benchmark drivers share: starting a Rekey executable and learning its port."""

import os
import re
import subprocess
import sys
import threading


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

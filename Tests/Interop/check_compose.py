#!/usr/bin/env python3
"""Checks compose.yaml and services/<name>/ against the code (DeploymentTests runs it).

No Docker engine runs here, so: Debian's `docker-compose config -q` validates the file, and this
script checks what the file and the Dockerfiles name against the real executables — every
REKEY_* variable is a setting the executable knows (its `serve --help` lists the flag), every
port is the one the settings make it listen on, health checks call real subcommands, the gateway
points at services that exist, only the gateway publishes a port, and each service folder has its
Dockerfile (multi-stage, slim runtime with only the runtime libraries, non-root, volume, health
check), example config and README. Prints one line per problem; exits 1 if there is any.

usage: check_compose.py ROOT BIN_DIR"""

import os
import re
import subprocess
import sys

import yaml

SERVICES = {  # compose service -> (executable, environment prefix, has data)
    "directory": ("rekey-directory", "REKEY_DIRECTORY_", True),
    "reset-token": ("rekey-reset-token", "REKEY_RESET_TOKEN_", True),
    "notifier": ("rekey-notifier", "REKEY_NOTIFIER_", True),
    "gateway": ("rekey-gateway", "REKEY_GATEWAY_", False),
}
RUNTIME_PACKAGES = {"libprotobuf-c1", "libssl3", "libsqlite3-0"}
ALLOWED_EXTRA_RUNTIME = {"ca-certificates", "tzdata"}

problems = []


def problem(text):
    problems.append(text)
    print("problem: " + text)


HELP = {}


def help_text(bin_dir, executable, subcommand):
    # Once per executable and subcommand: each variable is checked against the same text.
    key = (executable, subcommand)
    if key not in HELP:
        result = subprocess.run([os.path.join(bin_dir, executable), subcommand, "--help"], capture_output=True, text=True)
        HELP[key] = result.stdout + result.stderr
    return HELP[key]


def check_variable(bin_dir, executable, prefix, name, where):
    if not name.startswith(prefix):
        problem("%s: %s is not a %s* setting of %s" % (where, name, prefix, executable))
        return
    flag = "--" + name[len(prefix):].lower().replace("_", "-")
    if not re.search(re.escape(flag) + r"\b", help_text(bin_dir, executable, "serve")):
        problem("%s: %s has no setting %s in `%s serve --help`" % (where, name, flag, executable))


def port_of(address):
    return address.rsplit(":", 1)[1]


def check_dockerfile(root, bin_dir, service, executable, prefix, has_data):
    path = os.path.join(root, "services", service, "Dockerfile")
    text = open(path).read()
    where = "services/%s/Dockerfile" % service
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    if len(stages) < 2 or not stages[0].startswith("swift:") or not stages[-1].startswith("debian:") or "slim" not in stages[-1]:
        problem("%s: wants a multi-stage build from the official swift image to a slim Debian, has %s" % (where, stages))
    runtime = text[text.rindex("FROM "):]
    installs = re.search(r"apt-get install[^\n]*?--no-install-recommends((?:\\\n|[^\n])*)", runtime)
    packages = set(re.findall(r"\b(lib[\w.+-]+|ca-certificates|tzdata)\b", installs.group(1))) if installs else set()
    if not RUNTIME_PACKAGES <= packages or packages - RUNTIME_PACKAGES - ALLOWED_EXTRA_RUNTIME:
        problem("%s: runtime packages %s, wanted %s" % (where, sorted(packages), sorted(RUNTIME_PACKAGES)))
    if "--static-swift-stdlib" not in text:
        problem("%s: the runtime image has no Swift libraries; build with --static-swift-stdlib" % where)
    user = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    if not user or user[-1] in ("root", "0"):
        problem("%s: does not run as a non-root user" % where)
    if has_data and not re.search(r"^VOLUME\s", runtime, re.M):
        problem("%s: no VOLUME for the data" % where)
    health = re.search(r"^HEALTHCHECK .*CMD \[(.*)\]", runtime, re.M)
    if not health or '"%s", "healthcheck"' % executable not in health.group(1):
        problem("%s: no HEALTHCHECK calling `%s healthcheck`" % (where, executable))
    entry = re.search(r'^ENTRYPOINT \["([^"]+)"\]', runtime, re.M)
    if not entry or entry.group(1) != executable:
        problem("%s: ENTRYPOINT is not %s" % (where, executable))
    if "/out/%s" % executable not in text:
        problem("%s: does not build the product %s" % (where, executable))
    environment = {}
    for block in re.findall(r"^ENV ((?:\\\n|[^\n])*)", runtime, re.M):
        for name, value in re.findall(r"(\w+)=(\S+)", block):
            environment[name] = value
            check_variable(bin_dir, executable, prefix, name, where)
    exposed = set(re.findall(r"\d+", " ".join(re.findall(r"^EXPOSE (.*)$", runtime, re.M))))
    for key in ("LISTEN", "METRICS_LISTEN"):
        address = environment.get(prefix + key)
        if address is None:
            problem("%s: sets no %s%s" % (where, prefix, key))
        elif port_of(address) not in exposed:
            problem("%s: listens on %s but EXPOSEs %s" % (where, address, sorted(exposed)))


def main():
    root, bin_dir = sys.argv[1], sys.argv[2]
    os.chdir(root)
    env = dict(os.environ, REKEY_FORM_SECRET="compose-check-form-secret-0123456789")
    missing = subprocess.run(["docker-compose", "-f", "compose.yaml", "config", "-q"], capture_output=True, text=True,
                             env={k: v for k, v in os.environ.items() if k != "REKEY_FORM_SECRET"})
    if missing.returncode == 0 or "REKEY_FORM_SECRET" not in missing.stderr:
        problem("without REKEY_FORM_SECRET, `docker-compose config` should refuse and name it")
    valid = subprocess.run(["docker-compose", "-f", "compose.yaml", "config", "-q"], capture_output=True, text=True, env=env)
    if valid.returncode != 0:
        problem("docker-compose config -q: " + valid.stderr.strip())
        return
    config = yaml.safe_load(subprocess.run(["docker-compose", "-f", "compose.yaml", "config"], capture_output=True, text=True,
                                           env=env, check=True).stdout)
    services = config["services"]
    if set(services) != set(SERVICES) | {"mail"}:
        problem("services are %s, wanted the four and a mail catcher" % sorted(services))
    networks = config.get("networks", {})
    if not networks.get("backend", {}).get("internal"):
        problem("the backend network is not internal")

    listen = {}
    for name, (executable, prefix, has_data) in SERVICES.items():
        service = services.get(name)
        if service is None:
            continue
        for path in ["services/%s/Dockerfile" % name, "services/%s/README.md" % name, "services/%s/%s.conf" % (name, name)]:
            if not os.path.isfile(path):
                problem("%s is missing" % path)
        if service.get("build", {}).get("dockerfile") != "services/%s/Dockerfile" % name:
            problem("%s: builds from %s" % (name, service.get("build")))
        if os.path.isfile("services/%s/Dockerfile" % name):
            check_dockerfile(root, bin_dir, name, executable, prefix, has_data)
        environment = service.get("environment", {})
        for variable in environment:
            check_variable(bin_dir, executable, prefix, variable, "compose.yaml service %s" % name)
        # Mutual TLS: the process's own certificate from the mounted folder.
        workload = name
        wanted = {"TLS_CA": "/etc/rekey/certs/ca.pem", "TLS_CERT": "/etc/rekey/certs/%s.pem" % workload,
                  "TLS_KEY": "/etc/rekey/certs/%s-key.pem" % workload}
        for key, path in wanted.items():
            if environment.get(prefix + key) != path:
                problem("%s: %s%s is %r, wanted %s" % (name, prefix, key, environment.get(prefix + key), path))
        def mount(volume):  # (target, read-only) from the long or the short syntax
            if isinstance(volume, dict):
                return volume.get("target"), bool(volume.get("read_only"))
            parts = str(volume).split(":")
            return (parts[1] if len(parts) > 1 else parts[0]), parts[-1] == "ro"
        mounts = [mount(volume) for volume in service.get("volumes", []) if mount(volume)[0] == "/etc/rekey/certs"]
        if not mounts or not mounts[0][1]:
            problem("%s: the certificates are not mounted read-only at /etc/rekey/certs" % name)
        address = environment.get(prefix + "LISTEN", "")
        listen[name] = port_of(address) if address else None
        exposed = {str(port) for port in service.get("expose", [])}
        exposed |= {str(port["target"]) if isinstance(port, dict) else str(port).rsplit(":", 1)[-1] for port in service.get("ports", [])}
        for key in ("LISTEN", "METRICS_LISTEN"):
            if prefix + key in environment and port_of(environment[prefix + key]) not in exposed:
                problem("%s: listens on %s but exposes %s" % (name, environment[prefix + key], sorted(exposed)))
        test = service.get("healthcheck", {}).get("test", [])
        if test[:3] != ["CMD", executable, "healthcheck"]:
            problem("%s: the health check does not run `%s healthcheck`: %s" % (name, executable, test))
        else:
            known = help_text(bin_dir, executable, "healthcheck")
            for argument in test[3:]:
                if argument.startswith("--") and argument not in known:
                    problem("%s: `%s healthcheck` has no %s" % (name, executable, argument))
            target = next((a for a in test[3:] if re.search(r":\d+", a)), "")
            if listen[name] and not target.endswith(":" + listen[name]):
                problem("%s: the health check asks %s, the service listens on port %s" % (name, target, listen[name]))
        if has_data and not any(":/var/lib/rekey" in str(volume) or (isinstance(volume, dict) and volume.get("target") == "/var/lib/rekey")
                                for volume in service.get("volumes", [])):
            problem("%s: no volume on /var/lib/rekey" % name)
        if "backend" not in service.get("networks", {}):
            problem("%s: not on the backend network" % name)
        published = service.get("ports", [])
        if name != "gateway" and published:
            problem("%s publishes %s; only the gateway may" % (name, published))
    if services.get("mail", {}).get("ports"):
        problem("the mail catcher publishes a port; only the gateway may")

    gateway = services.get("gateway", {})
    ports = gateway.get("ports", [])
    targets = {str(port["target"]) if isinstance(port, dict) else str(port).rsplit(":", 1)[-1] for port in ports}
    if targets != {listen.get("gateway")}:
        problem("the gateway publishes %s, it listens on %s" % (sorted(targets), listen.get("gateway")))
    environment = gateway.get("environment", {})
    for key, target in (("DIRECTORY", "directory"), ("RESET_TOKEN", "reset-token"), ("NOTIFIER", "notifier")):
        value = environment.get("REKEY_GATEWAY_" + key, "")
        if value != "%s:%s" % (target, listen.get(target)):
            problem("the gateway's REKEY_GATEWAY_%s is %r, the %s service listens at %s:%s" % (key, value, target, target, listen.get(target)))
        condition = gateway.get("depends_on", {}).get(target, {}).get("condition")
        if condition != "service_healthy":
            problem("the gateway does not wait for %s to be healthy (%s)" % (target, condition))
    smtp = services.get("notifier", {}).get("environment", {}).get("REKEY_NOTIFIER_SMTP_SERVER", "")
    if smtp.split(":")[0] != "mail" or smtp.split(":")[-1] not in {str(p) for p in services.get("mail", {}).get("expose", [])}:
        problem("the notifier relays to %r, not to the mail catcher's exposed port" % smtp)

    print("compose.yaml: %d services checked, %d problems" % (len(services), len(problems)))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

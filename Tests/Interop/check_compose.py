#!/usr/bin/env python3
"""Checks compose.yaml (alone, and with compose.postgres.yaml) and services/<name>/ against the
code (DeploymentTests runs it).

No Docker engine runs here, so: Debian's `docker-compose config -q` validates the file, and this
script checks what the file and the Dockerfiles name against the real executables — every
REKEY_* variable is a setting the executable knows (its `serve --help` lists the flag), every
port is the one the settings make it listen on, health checks call real subcommands, the gateway
points at services that exist (every replica), only the gateway publishes a port, the PostgreSQL
variant points each replica at the database service, and each service folder has its Dockerfile (multi-stage, slim runtime with only the runtime libraries, non-root, volume, health
check), example config and README. Prints one line per problem; exits 1 if there is any.

usage: check_compose.py ROOT BIN_DIR"""

import os
import re
import subprocess
import sys

import yaml

SERVICES = {  # compose service -> (executable, environment prefix, has data, workload)
    "directory": ("rekey-directory", "REKEY_DIRECTORY_", True, "directory"),
    "reset-token": ("rekey-reset-token", "REKEY_RESET_TOKEN_", True, "reset-token"),
    "notifier": ("rekey-notifier", "REKEY_NOTIFIER_", True, "notifier"),
    "gateway": ("rekey-gateway", "REKEY_GATEWAY_", False, "gateway"),
}
# compose.postgres.yaml: second replicas (their data is in PostgreSQL), and the database.
POSTGRES_SERVICES = dict(SERVICES, **{
    "directory-2": ("rekey-directory", "REKEY_DIRECTORY_", False, "directory"),
    "reset-token-2": ("rekey-reset-token", "REKEY_RESET_TOKEN_", False, "reset-token"),
    "notifier-2": ("rekey-notifier", "REKEY_NOTIFIER_", False, "notifier"),
})
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


def compose(files, env, *arguments):
    command = ["docker-compose"] + [part for name in files for part in ("-f", name)] + ["config"] + list(arguments)
    return subprocess.run(command, capture_output=True, text=True, env=env)


def main():
    root, bin_dir = sys.argv[1], sys.argv[2]
    os.chdir(root)
    env = dict(os.environ, REKEY_FORM_SECRET="compose-check-form-secret-0123456789", REKEY_POSTGRES_PASSWORD="compose-check-database-password")
    for variable, files in (("REKEY_FORM_SECRET", ["compose.yaml"]), ("REKEY_POSTGRES_PASSWORD", ["compose.yaml", "compose.postgres.yaml"])):
        missing = compose(files, {k: v for k, v in env.items() if k != variable}, "-q")
        if missing.returncode == 0 or variable not in missing.stderr:
            problem("without %s, `docker-compose %s config` should refuse and name it" % (variable, " ".join(files)))
    checked = check(root, bin_dir, ["compose.yaml"], env, SERVICES, {"mail"},
                    {"DIRECTORY": ["directory"], "RESET_TOKEN": ["reset-token"], "NOTIFIER": ["notifier"]})
    postgres = check(root, bin_dir, ["compose.yaml", "compose.postgres.yaml"], env, POSTGRES_SERVICES, {"mail", "postgres"},
                     {"DIRECTORY": ["directory", "directory-2"], "RESET_TOKEN": ["reset-token", "reset-token-2"], "NOTIFIER": ["notifier", "notifier-2"]},
                     dockerfiles=False)
    if postgres:
        check_database(postgres, env["REKEY_POSTGRES_PASSWORD"])
    print("compose.yaml: %d services checked; with compose.postgres.yaml: %d; %d problems" % (len(checked or {}), len(postgres or {}), len(problems)))
    sys.exit(1 if problems else 0)


def check_database(services, password):
    """The PostgreSQL variant: every replica of the reset-token service and of the notifier at the
    database service, which stays internal and is checked for health."""
    database = services["postgres"]
    if database.get("ports"):
        problem("postgres publishes %s; only the gateway may" % database.get("ports"))
    if "backend" not in database.get("networks", {}):
        problem("postgres is not on the backend network")
    if (database.get("healthcheck", {}).get("test") or [None, None])[1] != "pg_isready":
        problem("postgres has no pg_isready health check")
    if not any(str(volume).split(":")[1:2] == ["/var/lib/postgresql/data"] or (isinstance(volume, dict) and volume.get("target") == "/var/lib/postgresql/data")
               for volume in database.get("volumes", [])):
        problem("postgres keeps its data in no volume")
    port = next(iter(str(p) for p in database.get("expose", [])), "")
    for name in ("directory", "directory-2", "reset-token", "reset-token-2", "notifier", "notifier-2"):
        prefix = POSTGRES_SERVICES[name][1]
        url = services.get(name, {}).get("environment", {}).get(prefix + "DATABASE", "")
        if not re.match(r"postgres://rekey:%s@postgres:%s/rekey\?sslmode=\w+$" % (re.escape(password), port), url):
            problem("%s: %sDATABASE is %r, not the postgres service" % (name, prefix, url))
        if services.get(name, {}).get("depends_on", {}).get("postgres", {}).get("condition") != "service_healthy":
            problem("%s does not wait for postgres to be healthy" % name)


def check(root, bin_dir, files, env, expected, extra, backends, dockerfiles=True):
    """Checks the configuration `files` make: the services `expected` and `extra`, the gateway
    pointed at `backends` (its variable -> the services listed in it), and with `dockerfiles`
    each service's Dockerfile. Returns the services."""
    valid = compose(files, env, "-q")
    if valid.returncode != 0:
        problem("docker-compose %s config -q: %s" % (" ".join(files), valid.stderr.strip()))
        return None
    config = yaml.safe_load(compose(files, env).stdout)
    services = config["services"]
    if set(services) != set(expected) | extra:
        problem("%s: services are %s, wanted %s" % (" + ".join(files), sorted(services), sorted(set(expected) | extra)))
    networks = config.get("networks", {})
    if not networks.get("backend", {}).get("internal"):
        problem("the backend network is not internal")

    listen = {}
    for name, (executable, prefix, has_data, workload) in expected.items():
        service = services.get(name)
        if service is None:
            continue
        for path in ["services/%s/Dockerfile" % workload, "services/%s/README.md" % workload, "services/%s/%s.conf" % (workload, workload)]:
            if not os.path.isfile(path):
                problem("%s is missing" % path)
        if service.get("build", {}).get("dockerfile") != "services/%s/Dockerfile" % workload:
            problem("%s: builds from %s" % (name, service.get("build")))
        if dockerfiles and os.path.isfile("services/%s/Dockerfile" % workload):
            check_dockerfile(root, bin_dir, name, executable, prefix, has_data)
        environment = service.get("environment", {})
        for variable in environment:
            check_variable(bin_dir, executable, prefix, variable, "%s service %s" % (" + ".join(files), name))
        # Mutual TLS: the process's own certificate from the mounted folder.
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
    for key, targets in backends.items():
        value = environment.get("REKEY_GATEWAY_" + key, "")
        wanted = ",".join("%s:%s" % (target, listen.get(target)) for target in targets)
        if value != wanted:
            problem("the gateway's REKEY_GATEWAY_%s is %r, wanted %s (where the services listen)" % (key, value, wanted))
        for target in targets:
            condition = gateway.get("depends_on", {}).get(target, {}).get("condition")
            if condition != "service_healthy":
                problem("the gateway does not wait for %s to be healthy (%s)" % (target, condition))
    for name in (name for name in services if expected.get(name, ("",))[0] == "rekey-notifier"):
        smtp = services[name].get("environment", {}).get("REKEY_NOTIFIER_SMTP_SERVER", "")
        if smtp.split(":")[0] != "mail" or smtp.split(":")[-1] not in {str(p) for p in services.get("mail", {}).get("expose", [])}:
            problem("%s relays to %r, not to the mail catcher's exposed port" % (name, smtp))
    return services


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""`make check-images`: proves that each service's runtime image, as its Dockerfile describes it,
is complete — without a Docker engine.

For each of services/{directory,reset-token,notifier,gateway}/Dockerfile this builds the runtime
stage by hand: a Debian bookworm root file system made by `debootstrap --variant=minbase` (what
`debian:bookworm-slim` is), then the stage's own steps in order — its RUN lines run inside the
root with `chroot` (so the apt-get line installs exactly the packages the Dockerfile names), its
COPY --from=build lines copy the release executables and resources that `make check-images` just
built the way the build stage does (`--static-swift-stdlib`), its ENV, USER, HEALTHCHECK,
ENTRYPOINT and CMD are honoured.

Then every image is run the way compose.yaml runs it: the environment, volumes and health checks
from `docker-compose config`, the certificates made by `rekey certs`, all four in one network
namespace of their own (compose's backend network) where the service names resolve to loopback,
and Tests/Interop/smtp_server.py standing in for the mail catcher. In it:

  - `ldd` inside each root finds every library the executable needs;
  - `--help` and `serve --help` answer, as the image's user;
  - each health check (the Dockerfile's and compose's) passes once the service is up;
  - `bootstrap-admin` makes the owner, as compose.yaml's comment says;
  - the forgot-password flow works end to end over the gateway's pages: the owner creates a
    customer through the admin API, the customer asks for a link, the mail arrives, the link sets
    a new password, and signing in with it works;
  - every service stops within 10 s of SIGTERM (docker stop's grace period) with exit status 0.

Needs root (debootstrap, chroot, mounts, network namespaces) and Debian's mirror (debootstrap and
the Dockerfiles' apt-get). The base root file system is kept in WORK/base between runs.

usage: check-images.py --bin BIN_DIR --work WORK [--root ROOT]
"""

import argparse
import http.cookiejar
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from email import policy
from email.parser import BytesParser

SERVICES = ["directory", "reset-token", "notifier", "gateway"]
MIRROR = "http://deb.debian.org/debian"
STOP_GRACE = 10  # seconds, as `docker stop`
DOCKER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Failure(Exception):
    pass


def step(text):
    print("== " + text, flush=True)


def run(command, **kwargs):
    """Runs a command; a non-zero exit is a failure that shows its output."""
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise Failure("%s exited with %d:\n%s%s" % (shlex.join(command), result.returncode, result.stdout[-3000:], result.stderr[-3000:]))
    return result.stdout


# MARK: Dockerfiles

def instructions(path):
    """The Dockerfile's instructions, continuation lines joined, comments dropped, in stages:
    [(base image, [(INSTRUCTION, arguments)])]."""
    lines, current = [], ""
    with open(path) as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            lines.append((current + line).strip())
            current = ""
    stages = []
    for line in lines:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stages.append((rest.split()[0], []))
        elif stages:
            stages[-1][1].append((word, rest.strip()))
        elif word != "ARG":
            raise Failure("%s: %s before the first FROM" % (path, word))
    return stages


def exec_form(text, where):
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise Failure("%s: %r is not in exec form (a JSON array)" % (where, text))
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Failure("%s: %r is not a JSON array of strings" % (where, text))
    return value


def image_plan(root, service):
    """What the runtime stage does, checked against what this script can reproduce."""
    path = os.path.join(root, "services", service, "Dockerfile")
    stages = instructions(path)
    if len(stages) < 2:
        raise Failure("%s: expected a build stage and a runtime stage" % path)
    (build_base, build_steps), (base, steps) = stages[0], stages[-1]
    if base != "debian:bookworm-slim":
        raise Failure("%s: the runtime stage starts FROM %s; this check builds debian:bookworm-slim" % (path, base))
    builds = [arguments for word, arguments in build_steps if word == "RUN" and "swift build" in arguments]
    if not builds or not all(flag in builds[0] for flag in ("-c release", "--static-swift-stdlib")):
        raise Failure("%s: the build stage does not run `swift build -c release --static-swift-stdlib` as this check does" % path)
    plan = {"path": path, "run": [], "copy": [], "env": {}, "user": "root", "healthcheck": None, "entrypoint": [], "cmd": []}
    for word, arguments in steps:
        where = "%s: %s" % (path, word)
        if word == "RUN":
            plan["run"].append(arguments)
        elif word == "COPY":
            parts = shlex.split(arguments)
            if len(parts) != 3 or parts[0] != "--from=build" or not parts[1].startswith("/out/"):
                raise Failure("%s %s: only COPY --from=build /out/NAME DEST is understood here" % (where, arguments))
            plan["copy"].append((parts[1][len("/out/"):], parts[2]))
        elif word == "ENV":
            for pair in shlex.split(arguments):
                name, equals, value = pair.partition("=")
                if not equals:
                    raise Failure("%s %s: only ENV NAME=VALUE is understood here" % (where, arguments))
                plan["env"][name] = value
        elif word == "USER":
            plan["user"] = arguments
        elif word == "HEALTHCHECK":
            _, _, command = arguments.partition("CMD ")
            plan["healthcheck"] = exec_form(command, where)
        elif word == "ENTRYPOINT":
            plan["entrypoint"] = exec_form(arguments, where)
        elif word == "CMD":
            plan["cmd"] = exec_form(arguments, where)
        elif word in ("VOLUME", "EXPOSE", "LABEL"):
            pass  # compose.yaml's volumes and ports are what this check uses (check_compose.py ties them together)
        else:
            raise Failure("%s: this check does not know how to reproduce %s" % (path, word))
    if not plan["entrypoint"]:
        raise Failure("%s: no ENTRYPOINT" % path)
    return plan


# MARK: Root file systems

def base_root(work):
    """debian:bookworm-slim's equivalent, made once and kept."""
    base = os.path.join(work, "base")
    if os.path.exists(os.path.join(base, ".rekey-complete")):
        return base
    step("debootstrap --variant=minbase bookworm (once; kept in %s)" % base)
    shutil.rmtree(base, ignore_errors=True)
    run(["debootstrap", "--variant=minbase", "bookworm", base, MIRROR])
    open(os.path.join(base, ".rekey-complete"), "w").close()
    return base


MOUNTS = []


def mount_system(root):
    """/proc, /sys and /dev, as a container has them."""
    for source, target, options in (("proc", "proc", ["-t", "proc"]), ("sysfs", "sys", ["-t", "sysfs", "-o", "ro"]), ("/dev", "dev", ["--bind"])):
        path = os.path.join(root, target)
        os.makedirs(path, exist_ok=True)
        run(["mount"] + options + [source, path])
        MOUNTS.append(path)


def unmount_under(folder):
    with open("/proc/mounts") as handle:
        points = [line.split()[1] for line in handle]
    for point in sorted((p for p in points if p.startswith(folder + "/")), reverse=True):
        run(["umount", "-l", point])


def unmount_all():
    for path in reversed(MOUNTS):
        subprocess.run(["umount", "-l", path], capture_output=True)
    MOUNTS.clear()


def build_image(root, work, bin_dir, service, plan):
    """The runtime stage's steps on a copy of the base."""
    image = os.path.join(work, service)
    unmount_under(image)  # left by a run that was interrupted: never delete through a bind mount
    subprocess.run(["rm", "-rf", "--one-file-system", image], check=True)
    run(["cp", "-a", base_root(work), image])
    os.remove(os.path.join(image, ".rekey-complete"))
    shutil.copy("/etc/resolv.conf", os.path.join(image, "etc", "resolv.conf"))
    mount_system(image)
    env = {"PATH": DOCKER_PATH, "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"}
    for command in plan["run"]:
        print("   RUN " + command, flush=True)
        run(["chroot", image, "/bin/sh", "-c", command], env=env)
    for name, destination in plan["copy"]:
        source = os.path.join(bin_dir, name)
        if not os.path.exists(source):
            raise Failure("%s copies /out/%s, which the build did not make (%s)" % (plan["path"], name, source))
        target = os.path.join(image, destination.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.isdir(source):
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
        print("   COPY %s -> %s" % (name, destination), flush=True)
    return image


def user_ids(image, user):
    if user.isdigit():
        return int(user), int(user), "/"
    with open(os.path.join(image, "etc", "passwd")) as handle:
        for line in handle:
            fields = line.rstrip("\n").split(":")
            if fields[0] == user:
                return int(fields[2]), int(fields[3]), fields[5]
    raise Failure("USER %s does not exist in the image" % user)


# MARK: Running the images as compose.yaml does

def compose_config(root, form_secret):
    environment = dict(os.environ, REKEY_FORM_SECRET=form_secret)
    environment.pop("REKEY_PUBLIC_URL", None)
    text = run(["docker-compose", "-f", os.path.join(root, "compose.yaml"), "config"], env=environment, cwd=root)
    import yaml  # python3-yaml, which Debian's docker-compose depends on
    return yaml.safe_load(text)["services"]


def volume_mounts(service_config):
    """(source on the host or None for a named volume, target, read only)."""
    for volume in service_config.get("volumes", []):
        if isinstance(volume, dict):
            yield (volume["source"] if volume.get("type") == "bind" else None), volume["target"], volume.get("read_only", False)
        else:
            parts = volume.split(":")
            source = parts[0] if parts[0].startswith((".", "/")) else None
            yield source, parts[1], len(parts) > 2 and "ro" in parts[2].split(",")


class Container:
    def __init__(self, name, image, plan, service_config, logs):
        self.name, self.image, self.plan = name, image, plan
        self.uid, self.gid, home = user_ids(image, plan["user"])
        self.env = {"PATH": DOCKER_PATH, "HOME": home, "HOSTNAME": name}
        self.env.update(plan["env"])
        self.env.update({key: str(value) for key, value in (service_config.get("environment") or {}).items()})
        self.log_path = os.path.join(logs, name + ".log")
        self.process = None

    def command(self, arguments):
        assignments = ["%s=%s" % item for item in sorted(self.env.items())]
        return ["chroot", "--userspec=%d:%d" % (self.uid, self.gid), self.image, "/usr/bin/env", "-i"] + assignments + arguments

    def exec(self, arguments, timeout=30):
        return subprocess.run(self.command(arguments), capture_output=True, text=True, timeout=timeout, cwd="/")

    def start(self):
        log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command(self.plan["entrypoint"] + self.plan["cmd"]), stdout=log, stderr=subprocess.STDOUT, cwd="/")

    def log_tail(self):
        with open(self.log_path, errors="replace") as handle:
            return handle.read()[-3000:]

    def wait_healthy(self, checks, seconds=60):
        deadline = time.time() + seconds
        while True:
            if self.process.poll() is not None:
                raise Failure("%s exited with %d while starting:\n%s" % (self.name, self.process.returncode, self.log_tail()))
            results = [self.exec(check, timeout=10) for check in checks]
            if all(result.returncode == 0 for result in results):
                return
            if time.time() > deadline:
                failed = [(check, result) for check, result in zip(checks, results) if result.returncode != 0]
                raise Failure("%s: health check %s still fails after %d s: %s%s\n--- log ---\n%s" % (
                    self.name, shlex.join(failed[0][0]), seconds, failed[0][1].stdout, failed[0][1].stderr, self.log_tail()))
            time.sleep(0.5)

    def stop(self):
        """SIGTERM, then what `docker stop` would do after its grace period."""
        if self.process is None or self.process.poll() is not None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return "did not stop within %d s of SIGTERM (killed)" % STOP_GRACE
        return None if status == 0 else "stopped with exit status %d after SIGTERM" % status


def check_libraries(container):
    executable = container.plan["entrypoint"][0]
    result = container.exec(["ldd", "/usr/local/bin/" + executable if "/" not in executable else executable])
    missing = [line.split()[0] for line in result.stdout.splitlines() if "not found" in line]
    if result.returncode != 0 or missing:
        raise Failure("%s: libraries missing from the image: %s\n%s%s" % (container.name, ", ".join(missing) or "?", result.stdout, result.stderr))
    libraries = sorted(line.split()[0] for line in result.stdout.splitlines() if "=>" in line)
    print("   %s links %s" % (executable, " ".join(libraries)), flush=True)


def check_help(container):
    for arguments in (["--help"], ["serve", "--help"]):
        result = container.exec(container.plan["entrypoint"] + arguments)
        if result.returncode != 0 or "USAGE" not in result.stdout.upper():
            raise Failure("%s %s exited with %d:\n%s%s" % (container.name, " ".join(arguments), result.returncode, result.stdout[-2000:], result.stderr[-2000:]))
    print("   --help and serve --help answer as uid %d" % container.uid, flush=True)


class Browser:
    """The gateway's pages as a browser without JavaScript uses them: cookies, forms, the CSRF
    field."""

    def __init__(self, base):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path):
        with self.opener.open(self.base + path if path.startswith("/") else path, timeout=30) as response:
            return response.read().decode()

    def post(self, path, fields):
        data = urllib.parse.urlencode(fields).encode()
        with self.opener.open(urllib.request.Request(self.base + path, data=data, method="POST"), timeout=30) as response:
            return response.read().decode()

    @staticmethod
    def csrf(page):
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        if not match:
            raise Failure("the page has no CSRF field:\n" + page[:1500])
        return match.group(1)


def api(base, key, method, path, body=None):
    request = urllib.request.Request(
        base + "/api/admin/v1" + path, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raise Failure("%s %s answered %d: %s" % (method, path, error.code, error.read().decode()[:500]))


def wait_for_mail(folder, recipient, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".envelope"):
                continue
            with open(os.path.join(folder, name)) as handle:
                if recipient not in handle.read().splitlines()[1:]:
                    continue
            with open(os.path.join(folder, name[: -len(".envelope")] + ".eml"), "rb") as handle:
                return BytesParser(policy=policy.default).parse(handle)
        time.sleep(0.2)
    raise Failure("no mail for %s arrived within %d s" % (recipient, seconds))


def forgot_flow(base, key, mail_folder):
    email, password = "casey.customer@example.com", "a new password for the image check"
    user = api(base, key, "POST", "/users", {"name": "Casey Customer", "email": email, "role": "customer"})
    print("   the owner created %s through the admin API" % user.get("id", user), flush=True)

    browser = Browser(base)
    page = browser.post("/password/forgot", {"csrf": Browser.csrf(browser.get("/password/forgot")), "email": email})
    if "Check your email" not in page:
        raise Failure("the forgot-password form did not answer 'Check your email':\n" + page[:1500])
    message = wait_for_mail(mail_folder, email)
    text = message.get_body(preferencelist=("plain",)).get_content()
    link = re.search(r"(https?://\S+/password/reset\?token=[A-Za-z0-9_-]+)", text)
    if not link:
        raise Failure("the reset mail has no link:\n" + text[:1500])
    print("   the reset mail arrived (%s), subject %r" % (message["Message-ID"], message["Subject"]), flush=True)

    path = urllib.parse.urlsplit(link.group(1))
    form = browser.get(path.path + "?" + path.query)
    token = re.search(r'name="token" value="([^"]+)"', form)
    if not token:
        raise Failure("the link did not open the new-password form:\n" + form[:1500])
    page = browser.post("/password/reset", {"csrf": Browser.csrf(form), "token": token.group(1), "password": password, "confirm": password})
    if "Your password was changed" not in page:
        raise Failure("setting the new password did not say 'Your password was changed':\n" + page[:1500])
    page = browser.post("/signin", {"csrf": Browser.csrf(page), "email": email, "password": password})
    if "You are signed in as" not in page:
        raise Failure("signing in with the new password failed:\n" + page[:1500])
    print("   the link set a new password, and signing in with it works", flush=True)


def inside(state_path):
    """Runs in the network namespace: starts the images, checks them, stops them."""
    with open(state_path) as handle:
        state = json.load(handle)
    root, work, logs = state["root"], state["work"], state["logs"]
    config = compose_config(root, secrets.token_hex(24))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    containers, failures = {}, []
    mail_folder = os.path.join(work, "mail")
    shutil.rmtree(mail_folder, ignore_errors=True)
    smtp_server = config["notifier"]["environment"]["REKEY_NOTIFIER_SMTP_SERVER"]
    catcher = subprocess.Popen(
        [sys.executable, os.path.join(root, "Tests", "Interop", "smtp_server.py"), mail_folder, "--port", smtp_server.rsplit(":", 1)[1]],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        if not catcher.stdout.readline().startswith("port="):
            raise Failure("the SMTP catcher did not start")
        for service in SERVICES:
            containers[service] = Container(service, state["images"][service], state["plans"][service], config[service], logs)

        step("inside the images: libraries and --help")
        for service in SERVICES:
            check_libraries(containers[service])
            check_help(containers[service])

        step("bootstrap-admin, as compose.yaml's comment runs it")
        directory = containers["directory"]
        result = directory.exec(directory.plan["entrypoint"] + ["bootstrap-admin", "--email", "owner@example.com", "--name", "Olive Owner"])
        key = re.search(r"API key \(shown once, keep it safe\): (\S+)", result.stdout)
        if result.returncode != 0 or not key:
            raise Failure("bootstrap-admin exited with %d:\n%s%s" % (result.returncode, result.stdout, result.stderr))
        print("   " + result.stdout.splitlines()[0], flush=True)

        step("starting the four services as compose.yaml does, health checks as they are written")
        for service in SERVICES:
            container = containers[service]
            container.start()
            checks = [container.plan["healthcheck"]] if container.plan["healthcheck"] else []
            test = config[service].get("healthcheck", {}).get("test")
            if test and test[0] == "CMD" and test[1:] not in checks:
                checks.append(test[1:])
            container.wait_healthy(checks)
            print("   %s is healthy (%s)" % (service, "; ".join(shlex.join(check) for check in checks)), flush=True)

        step("the forgot-password flow through the gateway")
        port = config["gateway"]["ports"][0]
        published = int(port["target"]) if isinstance(port, dict) else int(str(port).split(":")[-1])
        forgot_flow("http://127.0.0.1:%d" % published, key.group(1), mail_folder)
    except Failure as failure:
        failures.append(str(failure))
    finally:
        step("stopping each service with SIGTERM (grace %d s)" % STOP_GRACE)
        for service in reversed(SERVICES):
            container = containers.get(service)
            if container is None or container.process is None:
                continue
            problem = container.stop()
            if problem:
                failures.append("%s %s:\n%s" % (service, problem, container.log_tail()))
            else:
                print("   %s stopped cleanly" % service, flush=True)
        catcher.stdin.close()
        catcher.wait(10)
    for failure in failures:
        print("FAILED: " + failure, flush=True)
    return 1 if failures else 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--inside":
        return inside(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", required=True, help="the release build's folder (swift build -c release --static-swift-stdlib)")
    parser.add_argument("--work", required=True, help="where the root file systems go")
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("check-images needs root (debootstrap, chroot, mounts and a network namespace): sudo make check-images")
        return 2
    work, bin_dir = os.path.abspath(args.work), os.path.abspath(args.bin)
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    namespace = "rekey-images-%d" % os.getpid()
    status = 1
    try:
        if not os.access(os.path.join(bin_dir, "rekey"), os.X_OK):
            raise Failure("%s/rekey (which makes the certificates) is missing: build it first" % bin_dir)
        plans, images = {}, {}
        for service in SERVICES:
            step("services/%s/Dockerfile, runtime stage" % service)
            plans[service] = image_plan(args.root, service)
            images[service] = build_image(args.root, work, bin_dir, service, plans[service])

        step("certificates for mutual TLS, mounted where compose.yaml mounts ./certs")
        certs = os.path.join(work, "certs")
        shutil.rmtree(certs, ignore_errors=True)
        rekey = os.path.join(bin_dir, "rekey")
        run([rekey, "certs", "init", "--out", certs])
        for workload in SERVICES:
            run([rekey, "certs", "issue", workload, "--ca", certs, "--out", certs])
        config = compose_config(args.root, "0" * 48)
        for service in SERVICES:
            uid, gid, _ = user_ids(images[service], plans[service]["user"])
            for source, target, _ in volume_mounts(config[service]):
                if source is None:
                    continue
                if os.path.basename(source.rstrip("/")) != "certs":
                    raise Failure("compose.yaml mounts %s into %s; this check only knows ./certs" % (source, service))
                destination = os.path.join(images[service], target.lstrip("/"))
                shutil.copytree(certs, destination, dirs_exist_ok=True)
                for name in os.listdir(destination):
                    if name.endswith("-key.pem"):  # compose.yaml: `sudo chown 10001 certs/*-key.pem`
                        os.chown(os.path.join(destination, name), uid, gid)
            # compose's network: every service name (and the mail catcher) is this host.
            with open(os.path.join(images[service], "etc", "hosts"), "w") as handle:
                handle.write("127.0.0.1 localhost %s\n::1 localhost\n" % " ".join(sorted(config)))

        state = os.path.join(work, "state.json")
        with open(state, "w") as handle:
            json.dump({"root": args.root, "work": work, "logs": logs, "plans": plans, "images": images}, handle)
        run(["ip", "netns", "add", namespace])
        status = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, os.path.abspath(__file__), "--inside", state]).returncode
    except Failure as failure:
        print("FAILED: %s" % failure, flush=True)
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], capture_output=True)
        unmount_all()
    print("check-images: %s (logs in %s)" % ("every image is complete" if status == 0 else "FAILED", logs))
    return status


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The directory benchmark (`make bench-directory`): 1,000,000 users, imported 100,000 at a time
with `rekey-directory import`, then search and find-by-email latency in-process and through the
RPC, the database's size and the service's resident memory.

The users are generated (seeded, so every run has the same ones): common first and last names,
addresses on a few hundred domains, 5% of them agents (staff), the rest customers. The data folder
is kept between runs; pass --fresh to start again.
"""

import argparse
import os
import random
import re
import subprocess
import sys
import threading
import time

FIRST = """james mary john patricia robert jennifer michael linda william elizabeth david barbara richard susan joseph jessica
thomas sarah charles karen christopher nancy daniel lisa matthew betty anthony margaret mark sandra donald ashley steven kimberly
paul emily andrew donna joshua michelle kenneth dorothy kevin carol brian amanda george melissa edward deborah ronald stephanie
timothy rebecca jason sharon jeffrey laura ryan cynthia jacob kathleen gary amy nicholas shirley eric angela jonathan helen stephen
anna larry brenda justin pamela scott nicole brandon emma benjamin samantha samuel katherine gregory christine frank debra
alexander rachel raymond catherine patrick carolyn jack janet dennis ruth jerry maria tyler heather aaron diane jose virginia adam
julie henry joyce nathan victoria douglas olivia zachary kelly peter christina kyle lauren walter joan ethan evelyn jeremy judith
harold megan keith cheryl christian andrea roger hannah noah martha gerald jacqueline carl frances terry gloria sean ann austin
teresa arthur kathryn lawrence sara jesse janice dylan jean bryan alice joe madison jordan doris billy abigail bruce julia albert
judy willie grace gabriel denise logan amber alan marilyn juan beverly wayne danielle roy theresa ralph sophia randy marie eugene
diana vincent brittany russell natalie elijah isabella louis charlotte bobby rose philip alexis johnny kayla yusuf zoe xavier ines
bjorn yuki""".split()
LAST = """smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez wilson anderson thomas
taylor moore jackson martin lee perez thompson white harris sanchez clark ramirez lewis robinson walker young allen king wright
scott torres nguyen hill flores green adams nelson baker hall rivera campbell mitchell carter roberts gomez phillips evans turner
diaz parker cruz edwards collins reyes stewart morris morales murphy cook rogers gutierrez ortiz morgan cooper peterson bailey reed
kelly howard ramos kim cox ward richardson watson brooks chavez wood james bennett gray mendoza ruiz hughes price alvarez castillo
sanders patel myers long ross foster jimenez powell jenkins perry russell sullivan bell coleman butler henderson barnes gonzales
fisher vasquez simmons romero jordan patterson alexander hamilton graham reynolds griffin wallace moreno west cole hayes bryant
herrera gibson ellis tran medina aguilar stevens murray ford castro marshall owens harrison fernandez mcdonald woods washington
kennedy wells vargas henry chen freeman webb tucker guzman burns crawford olson simpson porter hunter gordon mendez silva shaw snyder
mason dixon munoz hunt hicks holmes palmer wagner black robertson boyd rose stone salazar fox warren mills meyer rice schmidt garza
daniels ferguson nichols stephens soto weaver ryan gardner payne grant dunn kelley spencer hawkins arnold pierce vazquez hansen
peters santos hart bradley knight elliott cunningham duncan armstrong hudson carroll lane riley andrews alvarado ray delgado berry
perkins hoffman johnston matthews pena richards willis carpenter lawrence sandoval xu zhang yamamoto quinn""".split()
DOMAINS = ["example.com", "mail.example", "corp.example", "acme.example", "post.example", "inbox.example"] + [
    "company%d.example" % i for i in range(200)
]
CREDENTIAL = "benchmark-credential-0123456789abcdef"


def write_chunks(folder, users, chunk):
    rng = random.Random(7)
    paths = []
    for start in range(0, users, chunk):
        path = os.path.join(folder, "users-%07d.csv" % start)
        with open(path, "w") as handle:
            handle.write("name,email,role,organization\n")
            for i in range(start, min(users, start + chunk)):
                first, last = rng.choice(FIRST), rng.choice(LAST)
                role = "agent" if rng.random() < 0.05 else "customer"
                handle.write("%s %s,%s.%s.%d@%s,%s,\n" % (first.capitalize(), last.capitalize(), first, last, i, rng.choice(DOMAINS), role))
        paths.append(path)
    return paths


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0


def print_latencies(title, output):
    print(title)
    print("  %-28s %8s %10s %10s" % ("query", "count", "p50 ms", "p99 ms"))
    for line in output.strip().splitlines():
        fields = line.split()
        print("  %-28s %8s %10.2f %10.2f %s" % (fields[0], fields[1], float(fields[2]) / 1000, float(fields[3]) / 1000, " ".join(fields[4:])))


def ensure_directory(directory, folder, users, fresh):
    """The data folder of a SQLite directory with `users` generated users, imported when missing
    (or when `fresh`)."""
    data = os.path.join(folder, "data")
    database = os.path.join(data, "directory.sqlite")
    if fresh and os.path.exists(database):
        for name in os.listdir(data):
            os.remove(os.path.join(data, name))
    os.makedirs(data, exist_ok=True)
    if not os.path.exists(database):
        print("Importing %d users, 100,000 per run of `rekey-directory import`:" % users)
        for path in write_chunks(folder, users, 100_000):
            started = time.monotonic()
            result = subprocess.run([directory, "import", path, "--data-dir", data], capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(result.stdout + result.stderr)
            print("  %s: %.1f s" % (os.path.basename(path), time.monotonic() - started))
            os.remove(path)
    return data


def serve(directory, data, environment):
    """Starts `rekey-directory serve` on a free port; the process and its RPC port."""
    service = subprocess.Popen(
        [directory, "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data-dir", data],
        env=dict(os.environ, REKEY_DIRECTORY_CREDENTIALS=CREDENTIAL, REKEY_DIRECTORY_TLS="off", **environment),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    for line in service.stdout:
        match = re.search(r"rpc\.port=(\d+)", line)
        if match:
            # Read the rest of its log as it comes, so that logging never blocks it.
            threading.Thread(target=lambda: [None for _ in service.stdout], daemon=True).start()
            return service, match.group(1)
    sys.exit("rekey-directory did not start: " + service.stdout.read())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", required=True, help="the rekey-directory executable (release build)")
    parser.add_argument("--rekey", required=True, help="the RekeyBenchmark executable (release build)")
    parser.add_argument("--folder", default=".build/bench-directory")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()

    data = ensure_directory(args.directory, args.folder, args.users, args.fresh)
    database = os.path.join(data, "directory.sqlite")
    size = sum(os.path.getsize(os.path.join(data, name)) for name in os.listdir(data))
    print("Database: %.0f MiB" % (size / 1048576))

    store = subprocess.run([args.rekey, "directory-store", database, str(args.queries)], check=True, capture_output=True, text=True)
    print_latencies("In the service's store (server-side, one caller):", store.stdout)

    service, port = serve(args.directory, data, {})
    try:
        print("rekey-directory resident memory after start: %.0f MiB" % rss_mib(service.pid))
        rpc = subprocess.run([args.rekey, "directory-rpc", port, CREDENTIAL, database, str(args.queries)], check=True, capture_output=True, text=True)
        print_latencies("Through the RPC (client to rekey-directory on loopback, one caller):", rpc.stdout)
        print("rekey-directory resident memory after the run: %.0f MiB" % rss_mib(service.pid))
    finally:
        service.terminate()
        service.wait()


if __name__ == "__main__":
    main()

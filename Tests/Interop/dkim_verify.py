#!/usr/bin/env python3
"""Verifies every DKIM-Signature of a message with python3-dkim, an implementation independent of
Rekey's, asking the test's DNS server (HOST:PORT) for the public keys.

Prints one JSON line: [{"d": ..., "s": ..., "a": ..., "ok": true|false, "error": ...}, ...]
"""

import json
import sys

import dkim
from dnslib import DNSRecord, QTYPE


def main():
    path, server = sys.argv[1], sys.argv[2]
    host, port = server.rsplit(":", 1)

    def dnsfunc(name, timeout=5):
        reply = DNSRecord.parse(DNSRecord.question(name.decode().rstrip("."), "TXT").send(host, int(port), timeout=timeout))
        for record in reply.rr:
            if record.rtype == QTYPE.TXT:
                return b"".join(record.rdata.data)
        return None

    message = open(path, "rb").read()
    verifier = dkim.DKIM(message)
    results = []
    signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    for index, value in enumerate(signatures):
        tags = dict(
            (part.split(b"=", 1)[0].strip().decode(), part.split(b"=", 1)[1].strip().decode())
            for part in value.replace(b"\r\n", b"").split(b";") if b"=" in part
        )
        try:
            ok = bool(verifier.verify(idx=index, dnsfunc=dnsfunc))
            error = None if ok else "signature did not verify"
        except Exception as exception:
            ok, error = False, "%s: %s" % (type(exception).__name__, exception)
        results.append({"d": tags.get("d"), "s": tags.get("s"), "a": tags.get("a"), "ok": ok, "error": error})
    print(json.dumps(results))


if __name__ == "__main__":
    main()

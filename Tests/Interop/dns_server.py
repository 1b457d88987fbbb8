#!/usr/bin/env python3
"""An authoritative DNS server for tests (dnslib, from Debian's python3-dnslib), UDP and TCP on
127.0.0.1.

Answers from a JSON zone file, read again at every query so a test can change records while the
server runs:

  {"selector._domainkey.example.com.": [["TXT", "v=DKIM1; k=rsa; p=..."]],
   "example.com.": [["MX", "10 mx.example.com."], ["TXT", "v=spf1 ip4:127.0.0.1 -all"]]}

A name with no entry answers NXDOMAIN; a name with entries but none of the asked type answers
NOERROR with no records. A TXT value longer than 255 bytes is sent as several strings, as real
zones do. With `--udp-limit N`, a UDP reply longer than N bytes is cut short with the TC bit
set (as a server ignoring EDNS0 would), so the client must ask again over TCP. Prints "port=N"
once it answers, and stops when its standard input closes.
"""

import argparse
import json
import socket
import sys

from dnslib import MX, QTYPE, RCODE, RR, TXT, A, CNAME
from dnslib.server import BaseResolver, DNSHandler, DNSServer


class ZoneResolver(BaseResolver):
    def __init__(self, path):
        self.path = path

    def resolve(self, request, handler):
        with open(self.path) as handle:
            zone = {name.lower(): records for name, records in json.load(handle).items()}
        reply = request.reply()
        reply.header.aa = 1
        name = str(request.q.qname).lower()
        qtype = QTYPE[request.q.qtype]
        if name not in zone:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for kind, value in zone[name]:
            if kind != qtype:
                continue
            if kind == "TXT":
                data = value.encode()
                rdata = TXT([data[i:i + 255] for i in range(0, len(data), 255)] or [b""])
            elif kind == "MX":
                preference, exchange = value.split()
                rdata = MX(exchange, int(preference))
            elif kind == "A":
                rdata = A(value)
            elif kind == "CNAME":
                rdata = CNAME(value)
            else:
                continue
            reply.add_answer(RR(request.q.qname, getattr(QTYPE, kind), rdata=rdata, ttl=60))
        return reply


def free_port():
    # A port free for both UDP and TCP.
    while True:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            udp.close()
            tcp.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("zone")
    parser.add_argument("--udp-limit", type=int, default=0)
    arguments = parser.parse_args()
    port = free_port()
    resolver = ZoneResolver(arguments.zone)
    # dnslib truncates a UDP reply over the handler's udplen (0: never).
    handler = type("LimitedHandler", (DNSHandler,), {"udplen": arguments.udp_limit})
    servers = [
        DNSServer(resolver, address="127.0.0.1", port=port, tcp=tcp, logger=Quiet(), handler=handler) for tcp in (False, True)
    ]
    for server in servers:
        server.start_thread()
    print("port=%d" % port, flush=True)
    sys.stdin.read()
    for server in servers:
        server.stop()


class Quiet:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


if __name__ == "__main__":
    main()

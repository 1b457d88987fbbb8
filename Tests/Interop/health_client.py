#!/usr/bin/env python3
"""Calls rekey.health.v1.Health/Check on a Rekey server and prints the serving status.

Usage: health_client.py GENERATED_DIR PORT [--tls CA CERT KEY SERVER_SPIFFE_ID]

With --tls: mutual TLS 1.3 as docs/protocol.md section 6 says, with Python's ssl module: our
certificate and key, the deployment CA, and a check that the server's certificate names
SERVER_SPIFFE_ID (a URI subject alternative name) before the first frame.
"""

import socket
import ssl
import sys

sys.path.insert(0, sys.argv[1])
sys.path.insert(0, __file__.rsplit("/", 1)[0])

from rekey.health.v1 import health_pb2  # noqa: E402
from rekey.rpc.v1 import envelope_pb2  # noqa: E402
import rekey_wire  # noqa: E402


def connect(port, tls):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if not tls:
        return sock
    ca, cert, key, expected = tls
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False  # the server is named by its SPIFFE ID, checked below
    context.load_verify_locations(ca)
    context.load_cert_chain(cert, key)
    secure = context.wrap_socket(sock)
    uris = [value for kind, value in secure.getpeercert().get("subjectAltName", ()) if kind == "URI"]
    if expected not in uris:
        secure.close()
        raise SystemExit("the server is not %s: its certificate names %s" % (expected, ", ".join(uris) or "no URI"))
    return secure


def main():
    port = int(sys.argv[2])
    tls = sys.argv[4:8] if len(sys.argv) >= 8 and sys.argv[3] == "--tls" else None
    with connect(port, tls) as sock:
        # Two calls in flight at once, to show call ids matter.
        rekey_wire.write_frame(sock, rekey_wire.make_request(
            41, "/rekey.health.v1.Health/Check", health_pb2.HealthCheckRequest(), timeout_micros=5_000_000))
        rekey_wire.write_frame(sock, rekey_wire.make_request(
            42, "/rekey.health.v1.Health/Check", health_pb2.HealthCheckRequest(service="rekey.nothing.v1.X")))
        answers = {}
        for _ in range(2):
            response = envelope_pb2.Response()
            response.ParseFromString(rekey_wire.read_frame(sock))
            if response.status.code != envelope_pb2.OK:
                print("call %d failed: %s %s" % (response.call_id, envelope_pb2.StatusCode.Name(response.status.code),
                                                 response.status.message))
                return 1
            reply = health_pb2.HealthCheckResponse()
            reply.ParseFromString(response.payload)
            answers[response.call_id] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print("%s %s" % (answers[41], answers[42]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""A Rekey RPC server in Python that answers rekey.health.v1.Health/Check with SERVING and every
other method with UNIMPLEMENTED. Prints its port on the first line of stdout; serves until its
standard input closes.

Usage: health_server.py GENERATED_DIR
"""

import os
import socket
import sys
import threading

sys.path.insert(0, sys.argv[1])
sys.path.insert(0, __file__.rsplit("/", 1)[0])

from rekey.health.v1 import health_pb2  # noqa: E402
from rekey.rpc.v1 import envelope_pb2  # noqa: E402
import rekey_wire  # noqa: E402


def serve_connection(sock):
    with sock:
        while True:
            frame = rekey_wire.read_frame(sock)
            if frame is None:
                return
            request = envelope_pb2.Request()
            request.ParseFromString(frame)
            response = envelope_pb2.Response(call_id=request.call_id)
            if request.method == "/rekey.health.v1.Health/Check":
                response.status.code = envelope_pb2.OK
                response.payload = health_pb2.HealthCheckResponse(
                    status=health_pb2.HealthCheckResponse.SERVING).SerializeToString()
            else:
                response.status.code = envelope_pb2.UNIMPLEMENTED
                response.status.message = "python serves only health"
            rekey_wire.write_frame(sock, response)


def main():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(listener.getsockname()[1], flush=True)

    def exit_when_stdin_closes():
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=serve_connection, args=(connection,), daemon=True).start()


if __name__ == "__main__":
    main()

"""Rekey's wire format in Python, written from docs/protocol.md and proto/ alone.

Each frame is a 4-byte big-endian length followed by one encoded message: rekey.rpc.v1.Request
from client to server, rekey.rpc.v1.Response from server to client.
"""

import struct

from rekey.rpc.v1 import envelope_pb2


def read_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame(sock):
    prefix = read_exactly(sock, 4)
    if prefix is None:
        return None
    (length,) = struct.unpack(">I", prefix)
    return read_exactly(sock, length)


def write_frame(sock, message):
    body = message.SerializeToString()
    sock.sendall(struct.pack(">I", len(body)) + body)


def make_request(call_id, method, message, credential=None, timeout_micros=0):
    request = envelope_pb2.Request(call_id=call_id, method=method, timeout_micros=timeout_micros,
                                   payload=message.SerializeToString())
    if credential:
        request.metadata.add(key="authorization", value="Bearer " + credential)
    request.metadata.add(key="caller", value="python-interop")
    return request

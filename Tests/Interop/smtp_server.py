#!/usr/bin/env python3
"""A real SMTP server for the notifier's tests (aiosmtpd, from Debian's python3-aiosmtpd).

Listens on 127.0.0.1 (PORT, or a free port), prints "port=N" once it accepts connections, writes
every accepted message to FOLDER as N.eml (the bytes received after DATA, as sent) with its
envelope in N.envelope (MAIL FROM, then the recipients, a line each), and stops when
its standard input closes. Chosen recipients can be refused:

  --reject ADDRESS      RCPT TO answers 550 5.1.1 (a hard bounce)
  --refuse ADDRESS=REPLY  RCPT TO answers REPLY, such as a relay's policy refusal
                        ("554 5.7.1 <ADDRESS>: Relay access denied")
  --defer ADDRESS:N     the first N RCPT TO for the address answer 451 4.3.0
  --require-auth U:P    AUTH PLAIN/LOGIN with these credentials before MAIL (plain text allowed)
  --stall-first         never answer the end of the first message's DATA (writes FOLDER/stalled)
  --size N              advertise SIZE N and refuse larger messages
  --no-smtputf8         do not offer SMTPUTF8 (RFC 6531; aiosmtpd's Controller offers it by default)
  --tls CERT:KEY        offer STARTTLS with this certificate; --require-tls refuses mail without it
"""

import argparse
import asyncio
import os
import socket
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, folder, reject, defer, stall_first, refuse=()):
        self.folder = folder
        self.refuse = {}
        for item in refuse:
            address, reply = item.split("=", 1)
            self.refuse[address.lower()] = reply
        self.stall_first = stall_first
        self.reject = {address.lower() for address in reject}
        self.defer = {}
        for item in defer:
            address, count = item.rsplit(":", 1)
            self.defer[address.lower()] = int(count)
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        key = address.lower()
        if key in self.refuse:
            return self.refuse[key]
        if key in self.reject:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown in local recipient table" % address
        if self.defer.get(key, 0) > 0:
            self.defer[key] -= 1
            return "451 4.3.0 <%s>: Temporary lookup failure, try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        if self.stall_first:
            self.stall_first = False
            open(os.path.join(self.folder, "stalled"), "w").close()
            await asyncio.sleep(3600)
        with self.lock:
            self.count += 1
            number = self.count
        queue_id = "T%05dQ" % number
        path = os.path.join(self.folder, "%d.eml" % number)
        with open(path + ".tmp", "wb") as handle:
            handle.write(envelope.original_content or envelope.content)
        # The envelope beside it (N.envelope: MAIL FROM, then each RCPT TO, one per line).
        with open(os.path.join(self.folder, "%d.envelope" % number), "w") as handle:
            handle.write("\n".join([envelope.mail_from or ""] + list(envelope.rcpt_tos)) + "\n")
        os.rename(path + ".tmp", path)
        return "250 2.0.0 Ok: queued as %s" % queue_id


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reject", action="append", default=[])
    parser.add_argument("--defer", action="append", default=[])
    parser.add_argument("--refuse", action="append", default=[])
    parser.add_argument("--size", type=int)
    parser.add_argument("--no-smtputf8", action="store_true")
    parser.add_argument("--require-auth")
    parser.add_argument("--stall-first", action="store_true")
    parser.add_argument("--tls")
    parser.add_argument("--require-tls", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.folder, exist_ok=True)
    port = args.port or free_port()
    options = {}
    if args.require_auth:
        user, password = args.require_auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password
            return AuthResult(success=ok)

        options = {"authenticator": authenticator, "auth_required": True, "auth_require_tls": False}
    if args.tls:
        import ssl

        cert, key = args.tls.split(":", 1)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        options = dict(options, tls_context=context, require_starttls=args.require_tls)
    if args.size:
        options = dict(options, data_size_limit=args.size)
    if args.no_smtputf8:
        options = dict(options, enable_SMTPUTF8=False)
    controller = Controller(Handler(args.folder, args.reject, args.defer, args.stall_first, args.refuse), hostname="127.0.0.1", port=port, server_kwargs=options)
    controller.start()
    print("port=%d" % port, flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Sends one message over SMTP with Python's smtplib, as a remote MTA sending a bounce would.

    send_mail.py HOST PORT MAIL_FROM RCPT_TO FILE

MAIL_FROM may be empty (a bounce's null sender). Prints the server's last reply as "CODE TEXT" and
exits 0 when it accepted, 1 when it refused (the refusal printed the same way).
"""

import smtplib
import sys


def main():
    host, port, sender, recipient, path = sys.argv[1:6]
    data = open(path, "rb").read()
    try:
        with smtplib.SMTP(host, int(port), timeout=10) as client:
            client.ehlo("mta.example.net")
            code, text = client.mail(sender)
            if code != 250:
                print(code, text.decode())
                return 1
            code, text = client.rcpt(recipient)
            if code not in (250, 251):
                print(code, text.decode())
                return 1
            code, text = client.data(data)
            print(code, text.decode())
            return 0 if code == 250 else 1
    except smtplib.SMTPException as error:
        print("error", error)
        return 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Writes a self-signed certificate for `localhost` and 127.0.0.1 (cert.pem, key.pem) into the
folder given, for the STARTTLS tests (Debian's python3-cryptography). With `--dns-only NAME`, the
certificate carries that DNS name alone (no IP address)."""

import datetime
import ipaddress
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

folder = sys.argv[1]
dns_only = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--dns-only" else None
names = [x509.DNSName(dns_only)] if dns_only else [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (
    x509.CertificateBuilder()
    .subject_name(name)
    .issuer_name(name)
    .public_key(key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(minutes=5))
    .not_valid_after(now + datetime.timedelta(days=1))
    .add_extension(x509.SubjectAlternativeName(names), critical=False)
    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    .sign(key, hashes.SHA256())
)
os.makedirs(folder, exist_ok=True)
with open(os.path.join(folder, "cert.pem"), "wb") as handle:
    handle.write(cert.public_bytes(serialization.Encoding.PEM))
with open(os.path.join(folder, "key.pem"), "wb") as handle:
    handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

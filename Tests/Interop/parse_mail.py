#!/usr/bin/env python3
"""Parses an RFC 5322 message with Python's email package (the strict, modern policy) and prints
what a mail reader sees, as JSON: the headers (decoded), the content types and the text and HTML
bodies (decoded). Used by the notifier's tests to check messages independently of our encoder."""

import json
import sys
from email import policy
from email.parser import BytesParser

with open(sys.argv[1], "rb") as handle:
    raw = handle.read()
message = BytesParser(policy=policy.default).parsebytes(raw)
out = {
    "headers": {key: str(value) for key, value in message.items()},
    "content_type": message.get_content_type(),
    "parts": [],
    "defects": [str(defect) for defect in message.defects],
    "bare_lf": b"\n" in raw.replace(b"\r\n", b""),
}
for part in message.walk():
    if part.is_multipart():
        continue
    out["parts"].append({"type": part.get_content_type(), "charset": part.get_content_charset(), "body": part.get_content()})
    out["defects"] += [str(defect) for defect in part.defects]
print(json.dumps(out))

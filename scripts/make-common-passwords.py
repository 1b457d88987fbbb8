#!/usr/bin/env python3
"""Writes the 10,000 most common passwords, for the directory's password policy.

Source: the ranked "passwords" frequency list shipped in the zxcvbn package on PyPI (MIT licence,
Dropbox), downloaded with pip. Output: Sources/RekeyDirectoryService/CommonPasswords.swift, the
list lower-cased, one per line, in rank order, inside one raw string literal (compiled into the
binary, so a deployed executable needs no resource files).

Usage: scripts/make-common-passwords.py   (needs pip and access to PyPI)
"""

import os
import subprocess
import sys
import tempfile
import zipfile

COUNT = 10_000
OUT = os.path.join(os.path.dirname(__file__), "..", "Sources", "RekeyDirectoryService", "CommonPasswords.swift")


def main():
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "zxcvbn==4.5.0", "-d", folder], check=True)
        wheel = next(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".whl"))
        source = zipfile.ZipFile(wheel).read("zxcvbn/frequency_lists.py").decode()
    namespace = {}
    exec(compile(source, "frequency_lists.py", "exec"), namespace)
    ranked = namespace["FREQUENCY_LISTS"]["passwords"]
    if isinstance(ranked, str):
        ranked = ranked.split(",")
    seen, words = set(), []
    for word in ranked:
        word = word.strip().lower()
        if word and word not in seen:
            seen.add(word)
            words.append(word)
        if len(words) == COUNT:
            break
    for word in words:
        if '"""#' in word or "\n" in word:
            sys.exit("cannot embed %r" % word)
    with open(OUT, "w") as handle:
        handle.write("// DO NOT EDIT. Made by scripts/make-common-passwords.py.\n")
        handle.write("// The %d most common passwords, most common first, lower-cased.\n" % len(words))
        handle.write("// Source: zxcvbn 4.5.0 (PyPI), frequency_lists.py, list \"passwords\";\n")
        handle.write("// MIT licence, (c) 2012-2016 Dropbox, Inc.\n\n")
        handle.write("enum CommonPasswords {\n")
        handle.write("    static let text = #\"\"\"\n")
        for word in words:
            handle.write(word + "\n")
        handle.write("\"\"\"#\n}\n")

if __name__ == "__main__":
    main()

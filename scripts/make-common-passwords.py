#!/usr/bin/env python3
"""Writes the 10,000 most common passwords, for the directory's password policy.

Source: the ranked "passwords" frequency list shipped in the zxcvbn package on PyPI (MIT licence,
Dropbox), downloaded with pip. Output: Sources/RekeyDirectoryService/Resources/common-passwords.txt,
the list lower-cased, one per line, in rank order, after three comment lines starting with "#".
SwiftPM copies it into the directory's resource bundle (Rekey_RekeyDirectoryService.resources),
which is installed next to the rekey-directory executable; the policy reads it once at start.

Usage: scripts/make-common-passwords.py   (needs pip and access to PyPI)
"""

import os
import subprocess
import sys
import tempfile
import zipfile

COUNT = 10_000
OUT = os.path.join(os.path.dirname(__file__), "..", "Sources", "RekeyDirectoryService", "Resources", "common-passwords.txt")


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
        if word.startswith("#") or "\n" in word:
            sys.exit("cannot write %r as a line of the list" % word)
    with open(OUT, "w") as handle:
        handle.write("# DO NOT EDIT. Made by scripts/make-common-passwords.py.\n")
        handle.write("# The %d most common passwords, most common first, lower-cased, one per line.\n" % len(words))
        handle.write("# Source: zxcvbn 4.5.0 (PyPI), frequency_lists.py, list \"passwords\"; MIT licence, (c) 2012-2016 Dropbox, Inc.\n")
        handle.write("\n".join(words) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Installs the Debian packages Rekey needs to build and test, if any are missing. Idempotent: a
# machine that has them all is left alone (no apt-get update, no network).
set -euo pipefail

packages=(
  pkg-config
  libprotobuf-c-dev protobuf-c-compiler   # the wire format's C library and its code generator
  protobuf-compiler python3-protobuf      # protoc for `make proto`, and the Python interop tests
  libssl-dev                              # OpenSSL libcrypto: CSPRNG, SHA-256, scrypt
  libsqlite3-dev                          # storage
  python3                                 # the Swift generator and the benchmark driver
  python3-aiosmtpd                        # the real SMTP server the notifier tests deliver to
  python3-cryptography                    # a throw-away certificate for the STARTTLS tests
  chromium chromium-driver python3-selenium   # the real-browser test of the reset flow
  docker-compose python3-yaml             # `docker-compose config -q` validates compose.yaml (no engine needed)
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "Installing missing packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"

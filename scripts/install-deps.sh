#!/usr/bin/env bash
# Installs the Debian packages Rekey needs to build and test, if any are missing, and the test
# venv. Idempotent: a machine that has them all is left alone (no apt-get update, no network).
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
  python3-dkim python3-dnslib             # an independent DKIM verifier, and the DNS server it asks on loopback
  postfix sasl2-bin                       # a throw-away relay of its own with SASL users (tests), smtp-sink (make bench-notifier)
  postgresql                              # the PostgreSQL backend's tests start a throw-away cluster of their own
  chromium chromium-driver python3-selenium   # the real-browser test of the reset flow
  docker-compose python3-yaml             # `docker-compose config -q` validates compose.yaml (no engine needed)
  python3-venv                            # the test venv below (axe-core for the console's accessibility check)
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing missing packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Only PostgreSQL's programs are wanted: no system cluster that would start and hold port 5432.
  if [[ " ${missing[*]} " == *" postgresql "* ]] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    $sudo mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.conf > /dev/null
  fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold "${missing[@]}"
fi

# The browser tests' Python: Debian's (with its Selenium) plus axe-core from PyPI, which the
# console test runs on every page for an accessibility check.
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.build/test-venv"
if ! "$venv/bin/python" -c "import axe_core_python, selenium" 2>/dev/null; then
  echo "Preparing the test Python in $venv (axe-core-python from PyPI)"
  rm -rf "$venv"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check axe-core-python==0.1.0
fi

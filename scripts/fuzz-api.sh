#!/usr/bin/env bash
# `make fuzz-api`: schemathesis (PyPI) against a running gateway, driven by the admin API's
# OpenAPI document: it generates requests from every route's parameters and bodies — huge and
# negative numbers, odd strings, wrong types — and fails on any 5xx, on answers that do not match
# the document, and on crashes. Two of its checks are left out, on purpose:
# positive_data_acceptance (ids, page tokens, names and addresses have rules a schema cannot state
# whole — a made-up page token is a 400, rightly) and unsupported_method (an undeclared method on a
# path answers 404, not 405: Hummingbird's router does not tell the two apart). A throw-away system (debug build, data in a temporary folder) is
# started on loopback ports; FUZZ_API_EXAMPLES (default 50) examples per operation, and at most
# FUZZ_API_SECONDS (default 300) in all.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
swift=${SWIFT:-swift}
examples=${FUZZ_API_EXAMPLES:-50}
seconds=${FUZZ_API_SECONDS:-300}
venv="$root/.build-fuzz/api-venv"

if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "Installing schemathesis into $venv…"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==4.32.5"
fi

"$swift" build --product rekey-directory
"$swift" build --product rekey-reset-token
"$swift" build --product rekey-notifier
"$swift" build --product rekey-gateway
bin=$("$swift" build --show-bin-path)

work=$(mktemp -d)
pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT

credential=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export REKEY_DIRECTORY_CREDENTIALS=$credential REKEY_RESET_TOKEN_CREDENTIALS=$credential \
  REKEY_NOTIFIER_CREDENTIALS=$credential REKEY_GATEWAY_SERVICE_CREDENTIAL=$credential \
  REKEY_DIRECTORY_TLS=off REKEY_RESET_TOKEN_TLS=off REKEY_NOTIFIER_TLS=off REKEY_GATEWAY_TLS=off
key=$("$bin/rekey-directory" bootstrap-admin --data-dir "$work" --email owner@example.com --name "Olive Owner" \
  | sed -n 's/^API key (shown once, keep it safe): //p')
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dp=$(free_port); tp=$(free_port); np=$(free_port); gp=$(free_port)
"$bin/rekey-directory" serve --data-dir "$work" --listen "127.0.0.1:$dp" --metrics-listen off --scrypt-log-n 10 >"$work/directory.log" 2>&1 & pids+=($!)
"$bin/rekey-reset-token" serve --data-dir "$work" --listen "127.0.0.1:$tp" --metrics-listen off >"$work/reset-token.log" 2>&1 & pids+=($!)
"$bin/rekey-notifier" serve --data-dir "$work" --listen "127.0.0.1:$np" --metrics-listen off --mail-dir "$work/mail" >"$work/notifier.log" 2>&1 & pids+=($!)
"$bin/rekey-gateway" serve --listen "127.0.0.1:$gp" --metrics-listen off --public-url "http://127.0.0.1:$gp" \
  --directory "127.0.0.1:$dp" --reset-token "127.0.0.1:$tp" --notifier "127.0.0.1:$np" >"$work/gateway.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do
  "$bin/rekey-gateway" healthcheck --ready --url "http://127.0.0.1:$gp" >/dev/null 2>&1 && break
  sleep 0.1
done

base="http://127.0.0.1:$gp/api/admin/v1"
echo "schemathesis against $base ($examples examples per operation, at most $seconds s)"
status=0
timeout --signal=INT "$seconds" "$venv/bin/schemathesis" run "$base/openapi.json" --url "$base" \
  --header "Authorization: Bearer $key" --checks all --exclude-checks positive_data_acceptance,unsupported_method \
  --max-examples "$examples" --workers 2 --seed 1 || status=$?
if grep -q -E '"level":"error"|\berror\b.*request failed' "$work/gateway.log"; then
  echo "the gateway logged errors:" >&2
  grep -E 'request failed' "$work/gateway.log" | head -20 >&2
  status=1
fi
exit $status

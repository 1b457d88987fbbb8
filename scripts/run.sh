#!/usr/bin/env bash
# `make run`: builds Rekey in release mode and starts the whole system on this machine — the
# directory, reset-token and notifier services and the gateway — with an embedded default: SQLite
# files in ./data, email written as files to ./mail (a maildir), mutual TLS between the processes
# with a CA and certificates made on the first run (`rekey certs`, in ./data/certs), a demo
# organization, an owner and a few staff and customers. Ctrl-C stops everything; running it
# again reuses the data (delete ./data and ./mail to start afresh).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
swift=${SWIFT:-swift}
data="$root/data"
mail="$root/mail"
logs="$data/logs"
bin="$root/.build/release"
port=${REKEY_HTTP_PORT:-8080}

echo "Building (release)…"
"$swift" build -c release --product rekey-directory
"$swift" build -c release --product rekey-reset-token
"$swift" build -c release --product rekey-notifier
"$swift" build -c release --product rekey-gateway
"$swift" build -c release --product rekey

mkdir -p "$data" "$mail" "$logs"
chmod 700 "$data"
# Mutual TLS between the processes: a deployment CA and a certificate per process, made once;
# certificates are valid for 30 days and issued again when less than a week is left.
certs="$data/certs"
if [ ! -s "$certs/ca.pem" ]; then
  "$bin/rekey" certs init --out "$certs" >/dev/null
fi
for workload in gateway directory reset-token notifier; do
  "$bin/rekey" certs issue "$workload" --ca "$certs" --out "$certs" --renew-within 7 >/dev/null
done
for pair in DIRECTORY:directory RESET_TOKEN:reset-token NOTIFIER:notifier GATEWAY:gateway; do
  service=${pair%%:*} workload=${pair#*:}
  export "REKEY_${service}_TLS_CA=$certs/ca.pem" "REKEY_${service}_TLS_CERT=$certs/$workload.pem" "REKEY_${service}_TLS_KEY=$certs/$workload-key.pem"
done
# The secret the gateway signs its forms' CSRF tokens with.
if [ ! -s "$data/form-secret" ]; then
  (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$data/form-secret")
fi
export REKEY_GATEWAY_FORM_SECRET=$(cat "$data/form-secret")

first_run=no
if [ ! -s "$data/admin-api-key" ]; then
  first_run=yes
  output=$("$bin/rekey-directory" bootstrap-admin --data-dir "$data" --email owner@example.com --name "Olive Owner")
  (umask 077; echo "$output" | sed -n 's/^API key (shown once, keep it safe): //p' > "$data/admin-api-key")
  # A helpdesk agent: staff with "Create and update users and organizations", as in the article.
  "$bin/rekey-directory" create-role --data-dir "$data" --name helpdesk --permission users.manage --staff >/dev/null
fi

pids=()
stop() {
  echo
  echo "Stopping…"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "Stopped. Run 'make run' again to continue with the same data."
}
trap stop EXIT
trap 'exit 0' INT TERM

"$bin/rekey-directory" serve --data-dir "$data" --listen 127.0.0.1:7101 >"$logs/directory.log" 2>&1 & pids+=($!)
"$bin/rekey-reset-token" serve --data-dir "$data" --listen 127.0.0.1:7102 >"$logs/reset-token.log" 2>&1 & pids+=($!)
"$bin/rekey-notifier" serve --data-dir "$data" --listen 127.0.0.1:7103 --transport maildir --mail-dir "$mail" \
  --from-address no-reply@rekey.localhost >"$logs/notifier.log" 2>&1 & pids+=($!)
"$bin/rekey-gateway" serve --listen "127.0.0.1:$port" --public-url "http://127.0.0.1:$port" >"$logs/gateway.log" 2>&1 & pids+=($!)

ready=no
for _ in $(seq 1 100); do
  if "$bin/rekey-gateway" healthcheck --ready --url "http://127.0.0.1:$port" >/dev/null 2>&1; then
    ready=yes
    break
  fi
  sleep 0.1
done

if [ "$ready" != yes ]; then
  echo "The services did not start; their logs are in $logs:" >&2
  tail -n 5 "$logs"/*.log >&2
  exit 1
fi

export REKEY_URL="http://127.0.0.1:$port" REKEY_API_KEY=$(cat "$data/admin-api-key")
if [ "$first_run" = yes ]; then
  echo "Creating the demo users…"
  "$bin/rekey" users create --name "Ada Admin" --email ada@example.com --role admin >/dev/null
  "$bin/rekey" users create --name "Hana Helpdesk" --email hana@example.com --role helpdesk >/dev/null
  "$bin/rekey" users create --name "Aaron Agent" --email aaron@example.com --role agent >/dev/null
  "$bin/rekey" users create --name "Cora Collaborator" --email cora@example.com --role collaborator >/dev/null
  "$bin/rekey" users create --name "Jane Doe" --email jane@example.com --role customer >/dev/null
  "$bin/rekey" users create --name "John Smith" --email john.smith@example.net --role customer >/dev/null
  "$bin/rekey" users create --name "Zoë Müller" --email zoe@example.org --role customer >/dev/null
fi

cat <<TEXT

Rekey is running.

  Sign-on page:   http://127.0.0.1:$port/   ("Forgot password?" sends a link)
  Admin console:  http://127.0.0.1:$port/console   (staff only: sign in there)
  Mail folder:    $mail/new   (every email, one file each; open the newest to follow a reset link)
  Logs:           $logs/
  Mutual TLS:     every RPC between the processes; CA and certificates in $certs
  Metrics:        http://127.0.0.1:9100/metrics (gateway), :9101 directory, :9102 reset-token, :9103 notifier
  Owner:          owner@example.com; admin API key in $data/admin-api-key$( [ "$first_run" = yes ] && echo ": $REKEY_API_KEY" )

Try the CLI in another terminal:

  export REKEY_URL=$REKEY_URL REKEY_API_KEY=\$(cat $data/admin-api-key)
  $bin/rekey users search --all j
  $bin/rekey reset send jane@example.com
  $bin/rekey messages jane@example.com

Demo users have no password yet: use "Forgot password?" with their address, then open the mail file.
  The console:    hana@example.com (helpdesk: finds users, sends reset email), aaron@example.com
                  (agent: reads only), ada@example.com (admin), owner@example.com (owner).
  End users:      jane@example.com, john.smith@example.net, zoe@example.org.
Press Ctrl-C to stop.
TEXT

wait

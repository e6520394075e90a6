#!/usr/bin/env bash
# make demo: the front half of the loop, end to end, on this machine.
#
# Starts a private nats-server (installing Debian's package if it is missing,
# as `make run` does) and every role on a fresh SQLite database with the
# example programs, imports the example directory, submits every document in
# deploy/examples/feedback/, and prints the tickets routing opened: owner,
# stakeholders, SLA and resolution guide, and the e-mails the notification
# role sent for them (caught by a local SMTP sink, Debian's python3-aiosmtpd)
# and the signed webhook deliveries a registered endpoint got (a local
# receiver, tests/support/webhook_receiver.py, checked with the Standard
# Webhooks reference library).
# Then stops what it started and removes its files: the demo never touches a
# broker, database or mail server you run.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=./target/debug/closeloop
data="${CLOSELOOP_DATA_DIR:-./.closeloop}"
mkdir -p "$data"
run_dir="$(mktemp -d "$data/demo.XXXXXX")"
prefix=demo
nats_port=${DEMO_NATS_PORT:-14222}
grpc=127.0.0.1:${DEMO_GRPC_PORT:-50151}
http=127.0.0.1:${DEMO_HTTP_PORT:-8180}
smtp_port=${DEMO_SMTP_PORT:-12525}
export CLOSELOOP_SERVER="http://$grpc"
export CLOSELOOP_HTTP_URL="http://$http"
export CLOSELOOP_NATS_URL="nats://127.0.0.1:$nats_port"
export CLOSELOOP_PREFIX="$prefix"

server_pid=""
nats_pid=""
smtp_pid=""
hook_pid=""
cleanup() {
  if [ -n "$hook_pid" ]; then kill "$hook_pid" 2>/dev/null || true; wait "$hook_pid" 2>/dev/null || true; fi
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ -n "$smtp_pid" ]; then kill "$smtp_pid" 2>/dev/null || true; wait "$smtp_pid" 2>/dev/null || true; fi
  if [ -n "$nats_pid" ]; then kill "$nats_pid" 2>/dev/null || true; wait "$nats_pid" 2>/dev/null || true; fi
  rm -rf "$run_dir"
  echo "demo stopped; nothing left running" >&2
}
trap cleanup EXIT INT TERM

deploy/local/install-nats.sh
nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$run_dir/nats" -l "$run_dir/nats.log" </dev/null >/dev/null 2>&1 &
nats_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break
  sleep 0.1
done

deploy/local/install-test-tools.sh
/usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$smtp_port" -c aiosmtpd.handlers.Mailbox "$run_dir/mail" \
  </dev/null >"$run_dir/smtp.log" 2>&1 &
smtp_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$smtp_port") 2>/dev/null && break
  sleep 0.1
done

/usr/bin/python3 tests/support/webhook_receiver.py "$run_dir/hooks.jsonl" >"$run_dir/hook.port" 2>/dev/null </dev/null &
hook_pid=$!
for _ in $(seq 1 100); do [ -s "$run_dir/hook.port" ] && break; sleep 0.1; done
hook_port=$(head -1 "$run_dir/hook.port")

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "programs: $CLOSELOOP_PROGRAMS"
"$bin" programs validate "$CLOSELOOP_PROGRAMS"

step "nats-server -js on 127.0.0.1:$nats_port; an SMTP sink on 127.0.0.1:$smtp_port; closeloop serve --roles all (SQLite in $run_dir)"
"$bin" serve --roles all --prefix "$prefix" --grpc-addr "$grpc" --http-addr "$http" \
  --database-url "sqlite://$run_dir/closeloop.db" --programs "$CLOSELOOP_PROGRAMS" \
  --smtp-url "smtp://127.0.0.1:$smtp_port" --mail-from "closeloop demo <cx@vendor.example>" \
  --outbound-allow 127.0.0.0/8 \
  >"$run_dir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/${http%:*}/${http##*:}") 2>/dev/null \
     && "$bin" tickets list -o id >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then cat "$run_dir/server.log" >&2; exit 1; fi
  sleep 0.1
done

step "directory import deploy/examples/directory.yaml"
"$bin" directory import deploy/examples/directory.yaml

step "webhooks add: a CRM-like receiver on 127.0.0.1:$hook_port gets ticket.opened (the demo allows 127.0.0.0/8 with --outbound-allow)"
hook_secret=$("$bin" webhooks add "http://127.0.0.1:$hook_port/ok/crm" --events ticket.opened --description "demo CRM" -o json \
  | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])')
for _ in $(seq 1 50); do "$bin" webhooks list | grep -q "/ok/crm" && break; sleep 0.1; done
"$bin" webhooks list

step "feedback submit deploy/examples/feedback/*.json"
"$bin" feedback submit deploy/examples/feedback/*.json

step "waiting for routing and ticketing"
count=-1; stable=0
for _ in $(seq 1 100); do
  n=$("$bin" tickets list --page-size 500 -o id | wc -l)
  if [ "$n" -gt 0 ] && [ "$n" = "$count" ]; then stable=$((stable + 1)); else stable=0; fi
  count=$n
  [ "$stable" -ge 5 ] && break
  sleep 0.2
done
echo "$count tickets opened"
tickets_opened=$count

step "tickets"
"$bin" tickets list --page-size 500

for id in $("$bin" tickets list --page-size 500 -o id); do
  step "ticket $id"
  "$bin" tickets show "$id"
done

step "e-mails the notification role sent (the SMTP sink's mailbox)"
count=-1; stable=0
for _ in $(seq 1 100); do
  n=$(find "$run_dir/mail/new" -type f 2>/dev/null | wc -l)
  if [ "$n" -gt 0 ] && [ "$n" = "$count" ]; then stable=$((stable + 1)); else stable=0; fi
  count=$n
  [ "$stable" -ge 5 ] && break
  sleep 0.2
done
/usr/bin/python3 - "$run_dir/mail" <<'PY'
import email, email.policy, mailbox, sys
box = mailbox.Maildir(sys.argv[1], create=False)
msgs = [email.message_from_bytes(box.get_bytes(k), policy=email.policy.default) for k in box.keys()]
print(f"{len(msgs)} e-mails")
for m in sorted(msgs, key=lambda m: (str(m["Subject"]), str(m["To"]))):
    body = m.get_body(preferencelist=("plain",)).get_content().strip().splitlines()
    print(f"\n  To: {m['To']}\n  Subject: {m['Subject']}\n  Message-ID: {m['Message-ID']}")
    for line in body[:6]:
        print(f"    {line}")
    if len(body) > 6:
        print(f"    ... ({len(body) - 6} more lines, and an HTML part)")
PY

step "webhook deliveries the receiver got (signatures checked with the standardwebhooks library)"
for _ in $(seq 1 50); do
  [ "$(wc -l <"$run_dir/hooks.jsonl" 2>/dev/null || echo 0)" -ge "$tickets_opened" ] && break
  sleep 0.2
done
.test-venv/bin/python - "$run_dir/hooks.jsonl" "$hook_secret" <<'PY'
import json, sys
from standardwebhooks.webhooks import Webhook
hook = Webhook(sys.argv[2])
lines = open(sys.argv[1]).read().splitlines()
print(f"{len(lines)} deliveries")
for line in lines:
    r = json.loads(line)
    body = json.loads(r["body"])
    try:
        hook.verify(r["body"], r["headers"])
        ok = "signature verified"
    except Exception as e:  # noqa: BLE001
        ok = f"signature NOT verified: {e}"
    t = body["data"]["ticket"]
    print(f"\n  POST {r['path']}  webhook-id: {r['headers']['webhook-id']}  ({ok})")
    print(f"    {body['type']} at {body['timestamp']}: ticket {t['id']} owner {t['owner_email']} status {t['status']}")
PY
"$bin" webhooks list

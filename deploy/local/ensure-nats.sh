#!/usr/bin/env bash
# Makes sure a NATS server with JetStream answers on $CLOSELOOP_NATS_URL
# (default nats://127.0.0.1:4222). If none answers, starts one with its store
# under .closeloop/nats, installing Debian's nats-server first if it is missing.
# Prints "started" when it started a server (its pid is in .closeloop/nats.pid).
set -euo pipefail

url="${CLOSELOOP_NATS_URL:-nats://127.0.0.1:4222}"
hostport="${url#*://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"
host="${hostport%:*}"; port="${hostport##*:}"
[ "$host" = "$hostport" ] && port=4222
data="${CLOSELOOP_DATA_DIR:-./.closeloop}"

answers() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

if answers; then
  echo "NATS already answers on $host:$port" >&2
  exit 0
fi

"$(dirname "$0")/install-nats.sh"

mkdir -p "$data/nats"
nats-server -js -a "$host" -p "$port" -sd "$data/nats" -l "$data/nats.log" </dev/null >/dev/null 2>&1 &
echo $! > "$data/nats.pid"
for _ in $(seq 1 100); do
  if answers; then echo "started nats-server (pid $(cat "$data/nats.pid"), store $data/nats, log $data/nats.log)" >&2; echo started; exit 0; fi
  sleep 0.1
done
echo "nats-server did not start; see $data/nats.log" >&2
exit 1

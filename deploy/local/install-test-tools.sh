#!/usr/bin/env bash
# Installs what the tests need besides nats-server and PostgreSQL: the
# reference Prometheus/OpenMetrics text parser (Debian's python3-prometheus-client),
# which a test uses to read /metrics as a scraper would, and a real SMTP
# server (Debian's python3-aiosmtpd), which the notification tests send to.
set -euo pipefail
# Debian's interpreter, which Debian's package serves (a pyenv or venv
# python3 earlier on PATH would not see it).
PY=/usr/bin/python3
[ -x "$PY" ] && "$PY" -c 'import prometheus_client, aiosmtpd' 2>/dev/null && exit 0
echo "python3-prometheus-client or python3-aiosmtpd not found; installing Debian's packages" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-prometheus-client python3-aiosmtpd >/dev/null
"$PY" -c 'import prometheus_client, aiosmtpd'

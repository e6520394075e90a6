#!/usr/bin/env bash
# Installs what the tests need besides nats-server and PostgreSQL:
# * Debian's python3-prometheus-client (the reference Prometheus/OpenMetrics
#   text parser: a test reads /metrics as a scraper would) and
#   python3-aiosmtpd (a real SMTP server the notification tests send to);
# * a virtual environment, .test-venv/ at the top of the repository, that
#   sees those and adds two PyPI packages: `standardwebhooks` (the Standard
#   Webhooks reference implementation, which verifies outbound webhook
#   signatures) and `jsonschema` (which checks webhook bodies against
#   docs/webhook-payload.schema.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
# Debian's interpreter, which Debian's packages serve (a pyenv or venv
# python3 earlier on PATH would not see them).
PY=/usr/bin/python3
if ! { [ -x "$PY" ] && "$PY" -c 'import prometheus_client, aiosmtpd, ensurepip' 2>/dev/null; }; then
  echo "python3-prometheus-client or python3-aiosmtpd not found; installing Debian's packages" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-prometheus-client python3-aiosmtpd python3-venv >/dev/null
  "$PY" -c 'import prometheus_client, aiosmtpd'
fi
VENV=.test-venv
if ! "$VENV/bin/python" -c 'import standardwebhooks, jsonschema, aiosmtpd' 2>/dev/null; then
  echo "creating $VENV with standardwebhooks and jsonschema from PyPI" >&2
  rm -rf "$VENV"
  "$PY" -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'standardwebhooks==1.1.0' 'jsonschema>=4.18,<5'
  "$VENV/bin/python" -c 'import standardwebhooks, jsonschema, aiosmtpd'
fi

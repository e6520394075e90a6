#!/usr/bin/env bash
# Installs Debian's nats-server if it is not on PATH.
set -euo pipefail
command -v nats-server >/dev/null && exit 0
echo "nats-server not found; installing Debian's package" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
command -v nats-server >/dev/null

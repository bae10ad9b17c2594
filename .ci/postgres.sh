#!/usr/bin/env bash
# A local PostgreSQL server for the tuning tests (Debian/Ubuntu, run as root): install the server if absent,
# start the default cluster if it is down, create the role and database if missing, and print the URL as the LAST
# line of stdout (everything else goes to stderr). Idempotent: a second call only checks and prints the URL.
#
#   MIMEA_TEST_POSTGRES="$(bash .ci/postgres.sh | tail -n 1)"; export MIMEA_TEST_POSTGRES
#
# Settings (env): MIMEA_PG_USER (mimea), MIMEA_PG_PASSWORD (mimea), MIMEA_PG_DB (mimea_test).
set -euo pipefail

PG_USER="${MIMEA_PG_USER:-mimea}"
PG_PASSWORD="${MIMEA_PG_PASSWORD:-mimea}"
PG_DB="${MIMEA_PG_DB:-mimea_test}"
say() { echo "postgres.sh: $*" >&2; }

if [ "$(id -u)" != "0" ]; then
  say "must run as root (installs and starts a system service)"; exit 1
fi
for name in "$PG_USER" "$PG_DB"; do
  [[ "$name" =~ ^[a-z_][a-z0-9_]*$ ]] || { say "invalid name: $name"; exit 1; }
done

# 1. the server (postgresql-common's pg_ctlcluster/pg_lsclusters + a versioned server)
if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  say "installing postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

# 2. a cluster (the package creates "main"; create one if a minimal image skipped that)
VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if [ -z "$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v')" ]; then
  say "creating cluster $VERSION/main"
  pg_createcluster "$VERSION" main >/dev/null
fi
read -r CLUSTER PORT STATUS < <(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v {print $2, $3, $4; exit}')

# 3. start it (pg_ctlcluster works without systemd, e.g. in containers)
if [ "$STATUS" != "online" ]; then
  say "starting cluster $VERSION/$CLUSTER on port $PORT"
  pg_ctlcluster "$VERSION" "$CLUSTER" start
fi
for _ in $(seq 1 60); do
  pg_isready -q -h localhost -p "$PORT" && break
  sleep 0.5
done
pg_isready -q -h localhost -p "$PORT" || { say "server on port $PORT does not answer"; exit 1; }

# 4. role and database (password login over TCP, the pg_hba default for localhost)
psql_admin() { runuser -u postgres -- psql -p "$PORT" -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != "1" ]; then
  say "creating role $PG_USER"
  psql_admin -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD'" >/dev/null
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != "1" ]; then
  say "creating database $PG_DB"
  psql_admin -c "CREATE DATABASE $PG_DB OWNER $PG_USER" >/dev/null
fi

URL="postgresql://$PG_USER:$PG_PASSWORD@localhost:$PORT/$PG_DB"
PGPASSWORD="$PG_PASSWORD" psql -h localhost -p "$PORT" -U "$PG_USER" -d "$PG_DB" -qtAc "SELECT 1" >/dev/null \
  || { say "cannot log in as $PG_USER"; exit 1; }
echo "$URL"

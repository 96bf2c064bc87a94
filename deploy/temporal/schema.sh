#!/bin/sh
# Creates or upgrades Temporal's schemas in the temporal and temporal_visibility databases
# (run by the temporal-schema service of deploy/compose.yaml before the server starts).
# Safe to run at every start: on a database that has a schema, update-schema applies only what
# a newer admin-tools image brings; only on a database without one (no schema_version table)
# does setup-schema start it at 0.0. Any other error stops here, changing nothing.
# The password comes from SQL_PASSWORD (deploy/temporal.env).
set -eu
: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?set SQL_PASSWORD in deploy/temporal.env}"
PORT="${DB_PORT:-5432}"
SCHEMAS=/etc/temporal/schema/postgresql/v12

tries=0
until nc -z -w 5 "$POSTGRES_SEEDS" "$PORT"; do
  tries=$((tries + 1))
  [ "$tries" -lt 60 ] || { echo "PostgreSQL at $POSTGRES_SEEDS:$PORT does not answer" >&2; exit 1; }
  sleep 2
done

sql() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$PORT" -u "$POSTGRES_USER" "$@"
}

for store in temporal:temporal visibility:temporal_visibility; do
  dir="$SCHEMAS/${store%%:*}/versioned"
  db="${store#*:}"
  if out="$(sql --db "$db" update-schema -d "$dir" 2>&1)"; then
    echo "schema of $db is up to date"
  elif printf '%s\n' "$out" | grep -q 'schema_version.*does not exist'; then
    echo "schema of $db: setting up from 0.0"
    sql --db "$db" setup-schema -v 0.0
    sql --db "$db" update-schema -d "$dir"
  else
    printf '%s\n' "$out" >&2
    echo "schema of $db: update-schema failed (above); fix that and start the service again" >&2
    exit 1
  fi
done

#!/bin/sh
# Creates or upgrades Temporal's schemas in the temporal and temporal_visibility databases
# (run by the temporal-schema service of deploy/compose.yaml before the server starts).
# Safe to run at every start: on a database that already has a schema, update-schema applies
# only what a newer admin-tools image brings; on an empty one, setup-schema starts it at 0.0.
# The password comes from SQL_PASSWORD (deploy/temporal.env).
set -eu
: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?set SQL_PASSWORD in deploy/temporal.env}"
PORT="${DB_PORT:-5432}"
SCHEMAS=/etc/temporal/schema/postgresql/v12

sql() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$PORT" -u "$POSTGRES_USER" "$@"
}

for store in temporal:temporal visibility:temporal_visibility; do
  dir="$SCHEMAS/${store%%:*}/versioned"
  db="${store#*:}"
  if sql --db "$db" update-schema -d "$dir"; then
    echo "schema of $db is up to date"
  else
    echo "schema of $db: setting up from 0.0"
    sql --db "$db" setup-schema -v 0.0
    sql --db "$db" update-schema -d "$dir"
  fi
done

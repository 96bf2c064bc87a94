#!/bin/sh
# First start of the PostgreSQL container only (docker-entrypoint-initdb.d): the roles and
# databases of the stack, each owned by its own role. Passwords come from postgres.env.
#   temporal: databases temporal and temporal_visibility (schemas: the temporal-schema service)
#   aios:     database aios (tables: `aios worker` applies its migrations at start)
set -eu
: "${TEMPORAL_DB_PASSWORD:?set TEMPORAL_DB_PASSWORD in deploy/postgres.env}"
: "${AIOS_DB_PASSWORD:?set AIOS_DB_PASSWORD in deploy/postgres.env}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v temporal_password="$TEMPORAL_DB_PASSWORD" -v aios_password="$AIOS_DB_PASSWORD" <<'SQL'
CREATE ROLE temporal LOGIN PASSWORD :'temporal_password';
CREATE ROLE aios LOGIN PASSWORD :'aios_password';
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
CREATE DATABASE aios OWNER aios;
SQL

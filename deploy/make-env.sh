#!/bin/sh
# Writes aios.env, postgres.env and temporal.env for deploy/compose.yaml from the *.example
# files beside this script, with fresh random secrets that agree with each other (the
# PostgreSQL passwords appear in two files each). Refuses to overwrite an existing file.
#   deploy/make-env.sh [FOLDER]     (default: the folder of this script)
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here}"
for f in aios.env postgres.env temporal.env; do
  if [ -e "$out/$f" ]; then
    echo "$out/$f exists; remove it first to write new secrets" >&2
    exit 1
  fi
done
mkdir -p "$out"
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }
superuser="$(secret)"
temporal="$(secret)"
aios="$(secret)"

umask 077
sed -e "s|^POSTGRES_PASSWORD=\$|POSTGRES_PASSWORD=$superuser|" \
    -e "s|^TEMPORAL_DB_PASSWORD=\$|TEMPORAL_DB_PASSWORD=$temporal|" \
    -e "s|^AIOS_DB_PASSWORD=\$|AIOS_DB_PASSWORD=$aios|" \
    "$here/postgres.env.example" > "$out/postgres.env"
sed -e "s|^POSTGRES_PWD=\$|POSTGRES_PWD=$temporal|" \
    -e "s|^SQL_PASSWORD=\$|SQL_PASSWORD=$temporal|" \
    "$here/temporal.env.example" > "$out/temporal.env"
sed -e "s|^AIOS_DATABASE_URL=\$|AIOS_DATABASE_URL=postgresql://aios:$aios@postgres:5432/aios|" \
    -e "s|^AIOS_SERVE_SECRET_KEY=\$|AIOS_SERVE_SECRET_KEY=$(secret)|" \
    -e "s|^AIOS_OPERATOR_TOKEN=\$|AIOS_OPERATOR_TOKEN=$(secret)|" \
    "$here/aios.env.example" > "$out/aios.env"
echo "wrote $out/aios.env, postgres.env and temporal.env (mode 0600); edit aios.env next:"
echo "your name and addresses, AIOS_SERVE_URL and your SMTP relay"

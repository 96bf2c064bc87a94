#!/bin/sh
# Registers the AiOs namespace and the search attributes AiOs sets (the same five as
# temporal-dev.yaml and src/aios/workflows/attributes.py), once the server answers. Run by the
# temporal-namespace service of deploy/compose.yaml; safe to run again.
set -eu
NAMESPACE="${AIOS_TEMPORAL_NAMESPACE:-aios}"
RETENTION="${NAMESPACE_RETENTION:-30d}"
: "${TEMPORAL_ADDRESS:?}"

# Runs "$@" until it succeeds (a new server, a namespace not yet in every cache), 2 min at most.
retry() {
  tries=0
  until "$@" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
      echo "gave up after 2 minutes: $*" >&2
      "$@"
      return 1
    fi
    sleep 2
  done
}

retry temporal operator cluster health
if temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
  echo "namespace $NAMESPACE exists"
else
  temporal operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION"
fi
retry temporal operator search-attribute list --namespace "$NAMESPACE"
existing="$(temporal operator search-attribute list --namespace "$NAMESPACE")"

# name:type, one per search attribute (keep in step with temporal-dev.yaml)
for attribute in \
  AiosProcess:Keyword \
  AiosClient:Keyword \
  AiosAwaitingApproval:Bool \
  AiosCostUsd:Double \
  AiosOutcome:Keyword
do
  name="${attribute%%:*}"
  type="${attribute#*:}"
  if printf '%s\n' "$existing" | grep -qw "$name"; then
    echo "search attribute $name exists"
  else
    temporal operator search-attribute create --namespace "$NAMESPACE" --name "$name" --type "$type"
  fi
done

#!/usr/bin/env bash
# One entry point for a fresh clone. Creates .venv with the pinned packages on first use.
#   ./run.sh demo    bring up the embedded stack and run `aios demo`
#   ./run.sh test    run the test suite (real dev server, PostgreSQL, Qdrant, SMTP)
#   ./run.sh check   ruff, format check, mypy
#   ./run.sh setup   only create or update .venv
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv

# The browser tests drive Debian's Chromium (Playwright launches /usr/bin/chromium).
browser() {
  [ -x /usr/bin/chromium ] && return 0
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium for the browser tests" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
  else
    echo "the browser tests need Debian's chromium: sudo apt-get install chromium" >&2
  fi
}

# The inbound-mail tests start their own Dovecot (Debian's dovecot-imapd) on a free port.
mailserver() {
  command -v dovecot >/dev/null && [ -e /usr/lib/dovecot/imap ] && return 0
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian's dovecot-imapd for the inbound-mail tests" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null; }
  else
    echo "the inbound-mail tests need Debian's dovecot-imapd: sudo apt-get install dovecot-imapd" >&2
  fi
}

setup() {
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  local stamp
  stamp="$VENV/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.lock
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  demo)  setup; exec "$VENV/bin/aios" demo "$@" ;;
  test)  setup; browser; mailserver; exec "$VENV/bin/python" -m pytest -q "$@" ;;
  check) setup
         "$VENV/bin/ruff" check .
         "$VENV/bin/ruff" format --check .
         "$VENV/bin/mypy" ;;
  setup) setup ;;
  *) echo "usage: ./run.sh demo|test|check|setup" >&2; exit 2 ;;
esac

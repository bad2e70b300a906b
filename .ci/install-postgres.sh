#!/usr/bin/env bash
# CI: what the `postgres` tests need (tests/crash/test_postgres_server.py): the PostgreSQL server
# binaries (initdb, pg_ctl) and psycopg2 in the project's venv. Idempotent; a failure here only
# warns, since those tests then skip with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

have_pg() { command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }

if ! have_pg; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
      || echo "install-postgres: apt-get install postgresql failed; the postgres tests will skip" >&2
  else
    echo "install-postgres: no PostgreSQL and no root apt-get; the postgres tests will skip" >&2
  fi
fi

# The venv is the one `make test` uses; create it the same way when it is missing.
[ -x "$VENV/bin/python" ] || make "$VENV/bin/.installed" VENV="$VENV"
if ! "$VENV/bin/python" -c "import psycopg2" >/dev/null 2>&1; then
  "$VENV/bin/pip" install -q "psycopg2-binary>=2.9,<3" \
    || echo "install-postgres: pip install psycopg2-binary failed; the postgres tests will skip" >&2
fi
exit 0

#!/usr/bin/env bash
# Lint, type-check and run every test against real PostgreSQL and Redis.
#
#   scripts/test.sh [pytest arguments...]
#
# Creates .venv if missing and installs the project with its development tools,
# installs the system packages the tests need (with apt-get, only if missing),
# starts PostgreSQL and Redis on 127.0.0.1 if they are not answering, then runs
# ruff, mypy and pytest. Exits non-zero if any of the three fails.
#
# ONCALL_TEST_PG and ONCALL_TEST_REDIS point the tests at other servers; the
# script then leaves the local services alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv

log() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- Python environment -------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' \
    || die "oncall needs Python 3.11 or 3.12 (set PYTHON=...)"
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.oncall-dev-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing the project and its development tools"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi

# --- System packages ----------------------------------------------------------
need=()
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing system packages: ${need[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
fi

# --- PostgreSQL and Redis -----------------------------------------------------
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

wait_for() {  # name check [seconds]
  local name=$1 check=$2 tries=$(( ${3:-30} * 4 ))
  for _ in $(seq 1 "$tries"); do
    if "$check"; then return 0; fi
    sleep 0.25
  done
  die "$name did not answer on 127.0.0.1 within ${3:-30} s"
}

if [ -z "${ONCALL_TEST_PG:-}" ] && ! pg_up; then
  log "starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  [ -n "$version" ] || die "no PostgreSQL cluster under /etc/postgresql"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_for PostgreSQL pg_up
fi

if [ -z "${ONCALL_TEST_REDIS:-}" ] && ! redis_up; then
  log "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis_up
fi

# --- Checks -------------------------------------------------------------------
status=0
log "ruff check oncall workers config tests bench"
"$VENV/bin/ruff" check oncall workers config tests bench || status=1
log "mypy"
"$VENV/bin/mypy" || status=1
log "pytest $*"
"$VENV/bin/pytest" "$@" || status=1

if [ "$status" -ne 0 ]; then
  echo "FAILED: see the output above" >&2
fi
exit "$status"

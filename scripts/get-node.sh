#!/usr/bin/env bash
# Print the directory of a Node.js that can build the dashboard (Vite 7 needs 20.19+ or 22.12+), fetching one into
# .tools/node when the system's is older (Debian 12 ships 18) or missing. Idempotent.
#
# The npm registry is reachable from CI and carries the official Node.js binaries as node-linux-<arch> packages,
# so an older npm (Debian's) is enough to fetch a newer Node.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WANT_MAJOR=22
node_ok() {  # node_ok <node binary>
  "$1" -e 'const [a, b] = process.versions.node.split(".").map(Number);
           process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a >= 23 ? 0 : 1)' >/dev/null 2>&1
}
if command -v node >/dev/null 2>&1 && node_ok "$(command -v node)"; then
  dirname "$(command -v node)"
  exit 0
fi
BIN="$(pwd)/.tools/node/bin"
if [ -x "$BIN/node" ] && node_ok "$BIN/node"; then
  echo "$BIN"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "error: npm is needed to fetch Node.js $WANT_MAJOR" >&2; exit 1; }
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "error: no Node.js $WANT_MAJOR package for $(uname -m); install Node.js 20.19+ by hand" >&2; exit 1 ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "node-linux-$arch@$WANT_MAJOR" >/dev/null && tar xzf ./*.tgz)
rm -rf "$(pwd)/.tools/node"
mkdir -p "$(pwd)/.tools"
mv "$work/package" "$(pwd)/.tools/node"
node_ok "$BIN/node" || { echo "error: the fetched Node.js does not run" >&2; exit 1; }
echo "$BIN"

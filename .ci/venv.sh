#!/usr/bin/env bash
# Usage: .ci/venv.sh STACK   (STACK = ipex | latest)
# Builds, or reuses, a virtualenv for one torch stack, outside the clone, keyed by a hash of the
# dependency spec, and prints its path on stdout. Build logs go to stderr.
set -euo pipefail
stack=${1:?usage: venv.sh ipex|latest}
here=$(cd "$(dirname "$0")" && pwd)
spec="$here/requirements-$stack.txt"
[ -f "$spec" ] || { echo "unknown stack: $stack" >&2; exit 2; }
key=$(cat "$spec" "$here/requirements-common.txt" | sha256sum | cut -c1-16)
root=${IPEX_RESNET_VENV_ROOT:-$HOME/.cache/ipex_resnet/venvs}
venv="$root/$stack-$key"
if [ ! -f "$venv/.complete" ]; then
  echo "building $stack venv at $venv" >&2
  rm -rf "$venv"
  mkdir -p "$root"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  (cd "$here" && "$venv/bin/python" -m pip install -q -r "$spec") >&2
  touch "$venv/.complete"
else
  echo "reusing $stack venv at $venv" >&2
fi
echo "$venv"

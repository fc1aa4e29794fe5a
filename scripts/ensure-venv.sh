#!/usr/bin/env bash
# Create the project's virtualenv. Debian ships python3 without venv/ensurepip, so when that is the
# reason it fails and we are root, install python3-venv with apt-get; otherwise say what to install.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}

if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "Entra Broker needs Python 3.11 or newer; '$python' is $("$python" --version 2>&1)." >&2
  exit 1
fi
if "$python" -m venv "$venv" 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  exit 0
fi
rm -rf "$venv"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "python3 -m venv failed; installing Debian's python3-venv ..." >&2
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  "$python" -m venv "$venv"
  exit 0
fi
echo "Cannot create a virtualenv: install python3-venv (sudo apt-get install python3-venv) and retry." >&2
exit 1

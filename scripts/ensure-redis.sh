#!/usr/bin/env bash
# The tests spawn their own redis-server on free loopback ports, so the binary must exist.
# Install Debian's package when we are root and it is missing; otherwise stop with a clear message.
set -euo pipefail
if command -v redis-server >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "redis-server not found; installing Debian's redis-server ..." >&2
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  # The package may start a system instance; the tests never use it (they use their own ports).
  command -v redis-server >/dev/null && exit 0
fi
echo "redis-server is required by the tests: install it (sudo apt-get install redis-server) and retry." >&2
exit 1

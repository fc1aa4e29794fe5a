#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (/usr/bin/chromium) with Playwright; they never download a
# browser (`playwright install` is not used). Install Debian's package when we are root and it is missing;
# otherwise stop with a clear message.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "$CHROMIUM not found; installing Debian's chromium ..." >&2
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  [ -x "$CHROMIUM" ] && exit 0
fi
echo "$CHROMIUM is required by the browser tests: install Debian's package (sudo apt-get install chromium) and retry." >&2
exit 1

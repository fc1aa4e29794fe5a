#!/usr/bin/env bash
# The forward-auth tests spawn Debian's nginx (auth_request) and caddy (forward_auth) on loopback ports,
# so both binaries must exist. Install Debian's packages when we are root and they are missing.
set -euo pipefail
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v caddy >/dev/null || missing+=(caddy)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "${missing[*]} not found; installing Debian's packages ..." >&2
  # The packages may start system instances; the tests never use them (they use their own ports).
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  exit 0
fi
echo "the forward-auth tests need ${missing[*]}: install (sudo apt-get install ${missing[*]}) and retry." >&2
exit 1

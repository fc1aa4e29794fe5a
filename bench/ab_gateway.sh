#!/usr/bin/env bash
# Two versions of the gateway side by side, in alternation, on the same Redis, nginx and dev IdP: the ratio
# of one change, measured so that the machine's drift (other work on a shared VM) hits both alike.
#
#   A_PYTHONPATH=/tmp/old bench/ab_gateway.sh        # A: that checkout's broker/ (git archive <commit> |
#                                                    # tar -x -C /tmp/old), B: this checkout (or B_PYTHONPATH)
#   DURATION=5 ROUNDS=3 A_PYTHONPATH=... bench/ab_gateway.sh   # THREADS, CONNECTIONS, GW_WORKERS, ACCESS_LOG
#
# Each round: A authenticated, B authenticated, A public route, B public route (wrk, 10 s each by default).
# Prints each run, the means, and B / A for both. Installs wrk, nginx, redis-server and curl when missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${A_PYTHONPATH:?set A_PYTHONPATH to the checkout to compare with}"
B_PYTHONPATH="${B_PYTHONPATH:-$REPO}"
ROUNDS="${ROUNDS:-3}"

need_apt wrk wrk
need_apt nginx nginx
need_apt redis-server redis-server
need_apt curl curl

start_redis
start_nginx
start_devidp
export PYTHONPATH="$A_PYTHONPATH"
GW_NAME=a
start_gateway
A_URL="$GW_URL"
A_COOKIE="$(gateway_cookie)"
export PYTHONPATH="$B_PYTHONPATH"
GW_NAME=b
start_gateway
B_URL="$GW_URL"
B_COOKIE="$(gateway_cookie)"
for side in A B; do
  url="${side}_URL" cookie="${side}_COOKIE"
  expect_status "$side authenticated" 200 -H "Cookie: ${!cookie}" "${!url}/"
done

echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS rounds in alternation; gateways: ${GW_WORKERS:-2} workers, Redis sessions, access log ${ACCESS_LOG:-true}"
echo "A: $A_PYTHONPATH   B: $B_PYTHONPATH"
machine_line
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
print_header
A_AUTH=0 B_AUTH=0 A_PUB=0 B_PUB=0
for round in $(seq "$ROUNDS"); do
  run_wrk "a-auth#$round" "$A_URL/" -H "Cookie: $A_COOKIE"
  print_row "A authenticated, round $round"
  A_AUTH=$((A_AUTH + R_RPS))
  run_wrk "b-auth#$round" "$B_URL/" -H "Cookie: $B_COOKIE"
  print_row "B authenticated, round $round"
  B_AUTH=$((B_AUTH + R_RPS))
  run_wrk "a-pub#$round" "$A_URL/pub/"
  print_row "A public route, round $round"
  A_PUB=$((A_PUB + R_RPS))
  run_wrk "b-pub#$round" "$B_URL/pub/"
  print_row "B public route, round $round"
  B_PUB=$((B_PUB + R_RPS))
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "authenticated: A $((A_AUTH / ROUNDS)) req/s, B $((B_AUTH / ROUNDS)) req/s, B / A $(ratio "$B_AUTH" "$A_AUTH")"
echo "public route:  A $((A_PUB / ROUNDS)) req/s, B $((B_PUB / ROUNDS)) req/s, B / A $(ratio "$B_PUB" "$A_PUB")"

#!/usr/bin/env bash
# wrk against the gateway (Redis store, 2 workers) and its nginx backend, after a real dev IdP login.
#
#   bench/run_gateway_bench.sh                 # 10 s per target
#   DURATION=5 bench/run_gateway_bench.sh      # THREADS=2 CONNECTIONS=64 GW_WORKERS=2 ROUNDS=3 ACCESS_LOG=false
#                                              # SHOW_WRK=1 KEEP_WORK=1
#
# Targets: nginx direct, gateway public route (/pub/), gateway authenticated route (/ with the session
# cookie), unauthenticated redirect (/ without a cookie, Accept: text/html -> 302 to the company chooser).
# Installs wrk, nginx and redis-server with apt-get when missing (as root). Loopback only; every process
# it starts is stopped by PID on exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_apt wrk wrk
need_apt nginx nginx
need_apt redis-server redis-server
need_apt curl curl

start_redis
start_nginx
start_devidp
start_gateway
COOKIE="$(gateway_cookie)"
log "logged in through the dev IdP: ${COOKIE%%=*}=<${#COOKIE} chars>"
# Sanity: the cookie really authenticates, and the anonymous request really redirects.
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE" "$GW_URL/")
[[ $code == 200 ]] || { log "authenticated request got HTTP $code"; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: text/html' "$GW_URL/")
[[ $code == 302 ]] || { log "unauthenticated request got HTTP $code, expected 302"; exit 1; }

ROUNDS="${ROUNDS:-3}"
echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, same machine; gateway: ${GW_WORKERS:-2} workers, Redis sessions, access log ${ACCESS_LOG:-true}"
machine_line
print_header
run_wrk nginx "http://127.0.0.1:$NGINX_PORT/"
print_row "nginx direct"
NGINX_RPS=$R_RPS
# Public and authenticated in alternation, ROUNDS times: on a shared 2-core VM one run of each differs by
# several percent from the next, so the ratio is taken between the means.
PUB_SUM=0
AUTH_SUM=0
for round in $(seq "$ROUNDS"); do
  run_wrk public "$GW_URL/pub/"
  print_row "gateway public route, round $round"
  PUB_SUM=$((PUB_SUM + R_RPS))
  run_wrk auth "$GW_URL/" -H "Cookie: $COOKIE"
  print_row "gateway authenticated, round $round"
  AUTH_SUM=$((AUTH_SUM + R_RPS))
done
PUB_RPS=$((PUB_SUM / ROUNDS))
AUTH_RPS=$((AUTH_SUM / ROUNDS))
run_wrk redirect "$GW_URL/" -H "Accept: text/html"
print_row "unauthenticated redirect (302)"
echo "gateway public route:        mean $PUB_RPS req/s over $ROUNDS rounds"
echo "gateway authenticated route: mean $AUTH_RPS req/s over $ROUNDS rounds"
echo "authenticated / public req/s: $(ratio "$AUTH_RPS" "$PUB_RPS")   (issue 7 target >= 0.90)"
echo "authenticated / nginx  req/s: $(ratio "$AUTH_RPS" "$NGINX_RPS")"

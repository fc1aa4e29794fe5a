#!/usr/bin/env bash
# Forward-auth and bearer figures (issue 16), after a real dev IdP login, same machine, same wrk load:
#
#   bench/forward_auth.sh                   # 10 s per target
#   DURATION=5 bench/forward_auth.sh        # THREADS, CONNECTIONS, GW_WORKERS, ACCESS_LOG, SHOW_WRK=1, KEEP_WORK=1
#
# Targets: the nginx backend direct; the gateway as the reverse proxy (session cookie); nginx auth_request
# in front of the same backend asking the gateway's /.auth/verify (cookie); /.auth/verify alone with a hot
# session (X-Original-URL, as nginx sends it); a hot bearer client (an app-only token from the dev IdP's
# client_credentials grant) on an api: route. Installs wrk, nginx, redis-server and curl when missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_apt wrk wrk
need_apt nginx nginx
need_apt redis-server redis-server
need_apt curl curl

start_verify_and_bearer_gateway
start_fa_nginx

expect_status "nginx auth_request" 200 -H "Cookie: $COOKIE" "$FA_URL/"
expect_status "nginx auth_request anonymous" 401 "$FA_URL/"
expect_status "verify alone" 200 -H "Cookie: $COOKIE" -H "X-Original-URL: http://localhost/" "$GW_URL/.auth/verify"
expect_status "bearer" 200 -H "Authorization: Bearer $TOKEN" "$GW_URL/api/"

echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, same machine; gateway: ${GW_WORKERS:-2} workers, Redis sessions, access log ${ACCESS_LOG:-true}"
machine_line
print_header
run_wrk nginx "http://127.0.0.1:$NGINX_PORT/"
print_row "nginx backend direct"
run_wrk proxy "$GW_URL/" -H "Cookie: $COOKIE"
print_row "gateway reverse proxy (cookie)"
PROXY_RPS=$R_RPS
run_wrk forward_auth "$FA_URL/" -H "Cookie: $COOKIE"
print_row "nginx auth_request -> verify"
FA_RPS=$R_RPS
run_wrk verify "$GW_URL/.auth/verify" -H "Cookie: $COOKIE" -H "X-Original-URL: http://localhost/"
print_row "/.auth/verify alone (hot session)"
run_wrk bearer "$GW_URL/api/" -H "Authorization: Bearer $TOKEN"
print_row "bearer hot client (api: route)"
BEARER_RPS=$R_RPS
echo "nginx auth_request / gateway proxy req/s: $(ratio "$FA_RPS" "$PROXY_RPS")"
echo "bearer / cookie (gateway proxy) req/s:   $(ratio "$BEARER_RPS" "$PROXY_RPS")"

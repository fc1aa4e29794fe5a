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

DAEMON_ID=5b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d
DAEMON_SECRET="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')"
CONTOSO_CLIENT_EXTRA="        api:
          app_id_uri: api://bench
          scopes: [Bench.Read]
          app_roles: {$DAEMON_ID: [Bench.Sync]}"
EXTRA_CLIENTS="
      - client_id: $DAEMON_ID
        client_secret: $DAEMON_SECRET"
EXTRA_SERVER="  trusted_proxies: [127.0.0.1/32]"

start_redis
start_nginx
start_devidp
EXTRA_ROUTES="  - host: localhost
    path: /api/
    upstream: http://127.0.0.1:$NGINX_PORT
    api: {audiences: [\"api://bench\", $CLIENT_ID], app_roles: [Bench.Sync]}"
start_gateway
COOKIE="$(gateway_cookie)"
TOKEN="$(curl -s "$IDP_URL/$TENANT_ID/oauth2/v2.0/token" -d grant_type=client_credentials \
  -d client_id="$DAEMON_ID" -d client_secret="$DAEMON_SECRET" -d scope=api://bench/.default |
  "$PY" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
GW_HOSTPORT="127.0.0.1:$GW_PORT"

# nginx auth_request in front of the backend, asking the gateway (the lines of docs/forward-auth.md).
start_fa_nginx() { on_some_port "$WORK/fa-nginx/stdout.log" start_fa_nginx_once; }
start_fa_nginx_once() {
  FA_PORT=$(port_to_try)
  mkdir -p "$WORK/fa-nginx"
  cat >"$WORK/fa-nginx/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/fa-nginx/nginx.pid;
error_log $WORK/fa-nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/fa-nginx/body;
  proxy_temp_path $WORK/fa-nginx/proxy;
  fastcgi_temp_path $WORK/fa-nginx/fastcgi;
  uwsgi_temp_path $WORK/fa-nginx/uwsgi;
  scgi_temp_path $WORK/fa-nginx/scgi;
  keepalive_requests 1000000;
  upstream broker { server $GW_HOSTPORT; keepalive 64; }
  upstream app { server 127.0.0.1:$NGINX_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$FA_PORT;
    location = /_broker_verify {
      internal;
      proxy_pass http://broker/.auth/verify;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL \$scheme://\$http_host\$request_uri;
      proxy_set_header X-Original-Method \$request_method;
    }
    location / {
      auth_request /_broker_verify;
      auth_request_set \$broker_assertion \$upstream_http_x_broker_assertion;
      proxy_set_header X-Broker-Assertion \$broker_assertion;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }
  }
}
CONF
  nginx -c "$WORK/fa-nginx/nginx.conf" -g 'daemon off;' >"$WORK/fa-nginx/stdout.log" 2>&1 &
  PIDS+=($!)
  sleep 0.5
  kill -0 "${PIDS[-1]}"
}
start_fa_nginx
FA_URL="http://localhost:$FA_PORT"

check() { # check LABEL EXPECTED CURL-ARGS...
  local label="$1" expected="$2" code
  shift 2
  code=$(curl -s -o /dev/null -w '%{http_code}' "$@")
  [[ $code == "$expected" ]] || { log "$label: HTTP $code, expected $expected"; exit 1; }
}
check "nginx auth_request" 200 -H "Cookie: $COOKIE" "$FA_URL/"
check "nginx auth_request anonymous" 401 "$FA_URL/"
check "verify alone" 200 -H "Cookie: $COOKIE" -H "X-Original-URL: http://localhost/" "$GW_URL/.auth/verify"
check "bearer" 200 -H "Authorization: Bearer $TOKEN" "$GW_URL/api/"

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

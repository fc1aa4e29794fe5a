# Shared pieces of the wrk benchmarks (sourced by run_gateway_bench.sh and compare_mod_auth_openidc.sh).
#
# Everything listens on 127.0.0.1 on ports bound at the moment of use (on_some_port); every started process's PID is recorded in PIDS and
# killed (TERM, then KILL after 5 s) by the EXIT trap. Nothing is written outside $WORK (a temp dir).

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
BROKER="$VENV/bin/broker"
PY="$VENV/bin/python"
DURATION="${DURATION:-10}"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
WORK="$(mktemp -d /tmp/broker-bench.XXXXXX)"
chmod 755 "$WORK" # nginx and apache workers drop root and must read their files here
PIDS=()

# Fixed IDs of the generated dev IdP directory (same GUIDs as config/devidp.yaml's Contoso).
TENANT_ID=3f2a9c4e-6b1d-4e8a-9c57-0d1e2f3a4b5c
CLIENT_ID=6a4f3e2d-1c0b-4a9f-8e7d-6c5b4a3f2e1d
BENCH_USER=adele@contoso.example

log() { printf '[bench] %s\n' "$*" >&2; }

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  if [[ -z "${KEEP_WORK:-}" ]]; then rm -rf "$WORK"; else log "logs kept in $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need_apt() { # need_apt BINARY PACKAGE...
  local bin="$1"
  shift
  if ! command -v "$bin" >/dev/null 2>&1; then
    if [[ $(id -u) != 0 ]]; then
      log "missing $bin: run as root or: apt-get install -y $*"
      exit 1
    fi
    log "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >"$WORK/apt.log" 2>&1 ||
      { apt-get update -q >>"$WORK/apt.log" 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$WORK/apt.log" 2>&1; } ||
      { tail -20 "$WORK/apt.log" >&2; exit 1; }
  fi
}

# A port for a server that binds its own (as tests/support/ports.py does for the tests): a random one under
# the kernel's ephemeral range (32768-60999), so no client socket is ever given it. Another server may
# listen on it: ours then fails with "address already in use" and on_some_port starts it on another.
# (Never "bind port 0, close, print the number": anyone can take that port before our server binds it.)
port_to_try() { echo $((10000 + RANDOM % 12768)); }

# on_some_port LOG START: run START (which takes its port from port_to_try, starts its server in the
# background as the last of PIDS and waits for it) until it works; when it fails and LOG says its port was
# taken, forget that process and run START again, at most 20 times.
on_some_port() {
  local log="$1" start="$2"
  for _ in $(seq 20); do
    "$start" && return 0
    grep -qi "address already in use" "$log" 2>/dev/null || return 1
    kill -KILL "${PIDS[-1]}" 2>/dev/null || true
    unset 'PIDS[-1]'
    log "$start: its port was taken, trying another"
  done
  return 1
}

wait_http() { # wait_http URL [seconds] [pid]: until the URL answers 200 (fails at once if pid exits)
  local url="$1" deadline=$((SECONDS + ${2:-20})) pid="${3:-}"
  until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      log "$url: the server exited; logs in $WORK"
      KEEP_WORK=1
      return 1
    fi
    if ((SECONDS > deadline)); then
      log "$url did not become ready; logs in $WORK"
      KEEP_WORK=1
      return 1
    fi
    sleep 0.1
  done
}

start_redis() { on_some_port "$WORK/redis.log" start_redis_once; }

start_redis_once() {
  REDIS_PORT=$(port_to_try)
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --daemonize no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do
    kill -0 "${PIDS[-1]}" 2>/dev/null || return 1
    # Asked for its own PID: a Redis of someone else's on this port does not count.
    [[ "$(redis-cli -p "$REDIS_PORT" info server 2>/dev/null | tr -d '\r' | grep '^process_id:')" == \
      "process_id:${PIDS[-1]}" ]] && return 0
    sleep 0.1
  done
  log "redis-server did not start"
  return 1
}

# EXTRA_NGINX (optional): directives appended to nginx's server block (e.g. more locations).
start_nginx() { on_some_port "$WORK/nginx/stdout.log" start_nginx_once; }

start_nginx_once() {
  NGINX_PORT=$(port_to_try)
  mkdir -p "$WORK/nginx/html"
  printf '<!doctype html><title>bench</title><p>Hello from the nginx backend.</p>\n' \
    >"$WORK/nginx/html/index.html"
  chmod -R a+rX "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/nginx/html;
    default_type text/html;
    location / { try_files /index.html =404; }${EXTRA_NGINX:+ $EXTRA_NGINX}
  }
}
EOF
  nginx -c "$WORK/nginx/nginx.conf" -g 'daemon off;' >"$WORK/nginx/stdout.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$NGINX_PORT/" 20 "${PIDS[-1]}"
}

# The dev IdP with its own small directory: Contoso, one confidential client whose redirect URIs are the
# gateway's callback and mod_auth_openidc's redirect URI on localhost (loopback ports are ignored).
# CONTOSO_CLIENT_EXTRA (optional): lines added to that client (8-space indent), e.g. an ``api:``;
# EXTRA_CLIENTS (optional): more client list items (6-space indent).
start_devidp() { on_some_port "$WORK/devidp.log" start_devidp_once; }

start_devidp_once() {
  IDP_PORT=$(port_to_try)
  IDP_URL="http://127.0.0.1:$IDP_PORT"
  CONTOSO_CLIENT_SECRET="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')"
  FABRIKAM_CLIENT_SECRET="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')"
  export CONTOSO_CLIENT_SECRET FABRIKAM_CLIENT_SECRET
  cat >"$WORK/devidp.yaml" <<EOF
tenants:
  - tenant_id: $TENANT_ID
    display_name: Contoso
    domains: [contoso.example]
    clients:
      - client_id: $CLIENT_ID
        client_secret: \${CONTOSO_CLIENT_SECRET}
        display_name: Entra Broker (Contoso)
        redirect_uris:
          - http://localhost:8080/.auth/callback
          - http://localhost:8080/redirect_uri
        post_logout_redirect_uris: [http://localhost:8080/.auth/logout/done]
${CONTOSO_CLIENT_EXTRA:-}${EXTRA_CLIENTS:-}
    users:
      - oid: 5d1f6b2a-8c3e-4f7a-9b0d-1e2c3a4b5d6e
        name: Adele Vance
        username: $BENCH_USER
        email: $BENCH_USER
        given_name: Adele
        family_name: Vance
        roles: [Wiki.Admin]
        groups: [c7e9a1b3-2d4f-4a6b-8c0e-9f1a2b3c4d5e]
EOF
  "$PY" -m devidp --config "$WORK/devidp.yaml" --listen "127.0.0.1:$IDP_PORT" --public-url "$IDP_URL" \
    >"$WORK/devidp.log" 2>&1 &
  PIDS+=($!)
  wait_http "$IDP_URL/$TENANT_ID/v2.0/.well-known/openid-configuration" 20 "${PIDS[-1]}"
}

# The gateway: Redis store, server.workers (default 2), /pub/ public and / enforced, both to nginx.
# EXTRA_ROUTES (optional): YAML list items appended to routes: (same 2-space indent as those above);
# EXTRA_SERVER (optional): lines added to server: (2-space indent); GW_NAME (optional): names its config
# and log files, so several gateways can run side by side (each watches its own config file).
# The login benchmarks send every sign-in from 127.0.0.1: the per-address limit on login starts
# (server.login_rate_per_second, 10/s by default) would answer most of them 429, so they raise it (many
# addresses each within the limit are what the bench stands for). Lines for EXTRA_SERVER.
LOGIN_RATE_UNLIMITED="  login_rate_per_second: 1000000
  login_rate_burst: 1000000"

start_gateway() { on_some_port "$WORK/gateway${GW_NAME:+-$GW_NAME}.log" start_gateway_once; }

start_gateway_once() {
  GW_PORT=$(port_to_try)
  GW_URL="http://localhost:$GW_PORT"
  GW_CONFIG="$WORK/broker${GW_NAME:+-$GW_NAME}.yaml"
  "$BROKER" keygen --out "$WORK/assertion${GW_NAME:+-$GW_NAME}.pem" >/dev/null
  cat >"$GW_CONFIG" <<EOF
server:
  public_url: $GW_URL
  listen: 127.0.0.1:$GW_PORT
  workers: ${GW_WORKERS:-2}
  access_log: ${ACCESS_LOG:-true}
${EXTRA_SERVER:-}
sessions:
  store: redis://127.0.0.1:$REDIS_PORT/0
  secret_keys: [$(head -c 32 /dev/urandom | base64)]
  idle_timeout: 8h
  lifetime: 24h
signing:
  keys: [$WORK/assertion${GW_NAME:+-$GW_NAME}.pem]
tenants:
  contoso:
    display_name: Contoso Ltd
    tenant_id: $TENANT_ID
    client_id: $CLIENT_ID
    client_secret: \${CONTOSO_CLIENT_SECRET}
    authority: $IDP_URL
    email_domains: [contoso.example]
    roles:
      order: [reader, writer, admin]
      default: reader
      app_roles: {Wiki.Admin: admin}
routes:
  - host: localhost
    path: /pub/
    upstream: http://127.0.0.1:$NGINX_PORT
    auth: public
  - host: localhost
    path: /
    upstream: http://127.0.0.1:$NGINX_PORT
    auth: enforce
    headers: {X-Remote-User: preferred_username}
EOF
  if [[ -n ${EXTRA_ROUTES:-} ]]; then printf '%s\n' "$EXTRA_ROUTES" >>"$GW_CONFIG"; fi
  "$BROKER" run --config "$GW_CONFIG" >"$WORK/gateway${GW_NAME:+-$GW_NAME}.log" 2>&1 &
  PIDS+=($!)
  wait_http "$GW_URL/.auth/readyz" 30 "${PIDS[-1]}"
}

gateway_cookie() {
  "$PY" "$REPO/bench/login.py" --gateway "$GW_URL" --code contoso --user "$BENCH_USER"
}

# run_wrk LABEL URL [wrk args...]: runs wrk, prints nothing, sets R_RPS R_P50 R_P99 R_ERR (ms for latency)
# and R_REQS (requests completed),
# and appends "LABEL|rps|p50|p99|errors" to $WORK/results.
run_wrk() {
  local label="$1" url="$2"
  shift 2
  local out="$WORK/wrk.$RANDOM.txt"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url" >"$out" 2>&1 || {
    cat "$out" >&2
    return 1
  }
  read -r R_RPS R_P50 R_P99 R_ERR R_REQS < <(awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v + 0
    }
    /^ *50%/ { p50 = ms($2) }
    /^ *99%/ { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { err += $5 }
    / requests in / { reqs = $1 }
    END { printf "%.0f %.2f %.2f %d %d\n", rps, p50, p99, err, reqs }' "$out")
  if [[ -n "${SHOW_WRK:-}" ]]; then cat "$out" >&2; fi
  echo "$label|$R_RPS|$R_P50|$R_P99|$R_ERR" >>"$WORK/results"
}

print_header() {
  printf '%-34s %10s %9s %9s %8s\n' target "req/s" "p50 ms" "p99 ms" errors
}

print_row() { # print_row LABEL (uses R_*)
  printf '%-34s %10s %9s %9s %8s\n' "$1" "$R_RPS" "$R_P50" "$R_P99" "$R_ERR"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

machine_line() {
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); $(date -u +%Y-%m-%d)"
}

# --- Forward-auth and bearer pieces (bench/forward_auth.sh, bench/compare_mod_auth_openidc.sh) -------------

# Before start_devidp: a daemon client (client_credentials) holding the app role Bench.Sync on the Contoso
# client's API api://bench. After start_nginx, bearer_route gives the gateway's api: route (EXTRA_ROUTES).
with_bearer_client() {
  DAEMON_ID=5b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d
  DAEMON_SECRET="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')"
  CONTOSO_CLIENT_EXTRA="        api:
          app_id_uri: api://bench
          scopes: [Bench.Read]
          app_roles: {$DAEMON_ID: [Bench.Sync]}"
  EXTRA_CLIENTS="
      - client_id: $DAEMON_ID
        client_secret: $DAEMON_SECRET"
}

bearer_route() {
  printf '%s\n' "  - host: localhost
    path: /api/
    upstream: http://127.0.0.1:$NGINX_PORT
    api: {audiences: [\"api://bench\", $CLIENT_ID], app_roles: [Bench.Sync]}"
}

bearer_token() { # an app-only access token for the daemon client, from the dev IdP
  curl -s "$IDP_URL/$TENANT_ID/oauth2/v2.0/token" -d grant_type=client_credentials \
    -d client_id="$DAEMON_ID" -d client_secret="$DAEMON_SECRET" -d scope=api://bench/.default |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# Redis, nginx, the dev IdP and a gateway that answers /.auth/verify from loopback (server.trusted_proxies)
# and has the bearer client's api: route at /api/; sets COOKIE (a signed-in session) and TOKEN (an app-only
# access token from the client_credentials grant).
start_verify_and_bearer_gateway() {
  with_bearer_client
  EXTRA_SERVER="  trusted_proxies: [127.0.0.1/32]"
  start_redis
  start_nginx
  start_devidp
  EXTRA_ROUTES="$(bearer_route)"
  start_gateway
  COOKIE="$(gateway_cookie)"
  TOKEN="$(bearer_token)"
}

# nginx auth_request in front of the backend, asking the gateway's /.auth/verify (the lines of
# docs/forward-auth.md). FA_CACHE_SECONDS (optional): the opt-in cache of verify answers keyed by the session
# cookie (docs/forward-auth.md, "Caching verify answers"), with that TTL. FA_BIND (optional): the source
# address nginx asks the gateway from (so only it is in server.trusted_proxies, not wrk's 127.0.0.1).
# Sets FA_URL; each call starts its own nginx (FA_NAME: its folder under $WORK).
start_fa_nginx() {
  FA_DIR="$WORK/${FA_NAME:-fa-nginx}"
  on_some_port "$FA_DIR/stdout.log" start_fa_nginx_once
  FA_URL="http://localhost:$FA_PORT"
}

start_fa_nginx_once() {
  FA_PORT=$(port_to_try)
  mkdir -p "$FA_DIR/cache"
  chmod -R a+rwX "$FA_DIR"
  local cache_http="" cache_location="" bind=""
  if [[ -n ${FA_CACHE_SECONDS:-} ]]; then
    cache_http="proxy_cache_path $FA_DIR/cache levels=1 keys_zone=broker_verify:10m max_size=100m inactive=1m use_temp_path=off;
  map \$http_cookie \$broker_session {
    \"~(?:^|;)\\s*${GW_COOKIE_NAME:-broker}=(?<session>[^;]+)\" \$session;
    default \"\";
  }
  map \$broker_session \$broker_no_session {
    \"\" 1;
    default 0;
  }"
    cache_location="proxy_cache broker_verify;
      proxy_cache_key \"\$broker_session \$request_method \$scheme://\$http_host\$request_uri\";
      proxy_cache_valid 200 ${FA_CACHE_SECONDS}s;
      proxy_ignore_headers Cache-Control Expires;
      proxy_no_cache \$broker_no_session;
      proxy_cache_bypass \$broker_no_session;"
  fi
  if [[ -n ${FA_BIND:-} ]]; then bind="proxy_bind $FA_BIND;"; fi
  cat >"$FA_DIR/nginx.conf" <<CONF
worker_processes auto;
pid $FA_DIR/nginx.pid;
error_log $FA_DIR/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $FA_DIR/body;
  proxy_temp_path $FA_DIR/proxy;
  fastcgi_temp_path $FA_DIR/fastcgi;
  uwsgi_temp_path $FA_DIR/uwsgi;
  scgi_temp_path $FA_DIR/scgi;
  keepalive_requests 1000000;
  upstream broker { server 127.0.0.1:$GW_PORT; keepalive 64; }
  upstream app { server 127.0.0.1:$NGINX_PORT; keepalive 64; }
  $cache_http
  server {
    listen 127.0.0.1:$FA_PORT;
    location = /_broker_verify {
      internal;
      $bind
      proxy_pass http://broker/.auth/verify;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL \$scheme://\$http_host\$request_uri;
      proxy_set_header X-Original-Method \$request_method;
      $cache_location
    }
    # The same nginx with no auth_request: what the ingress alone costs (a ceiling for forward-auth).
    location /plain/ {
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://app/;
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
  nginx -c "$FA_DIR/nginx.conf" -g 'daemon off;' >"$FA_DIR/stdout.log" 2>&1 &
  PIDS+=($!)
  sleep 0.5
  kill -0 "${PIDS[-1]}"
}

expect_status() { # expect_status LABEL EXPECTED CURL-ARGS...: exits when the answer is not EXPECTED
  local label="$1" expected="$2" code
  shift 2
  code=$(curl -s -o /dev/null -w '%{http_code}' "$@")
  [[ $code == "$expected" ]] || { log "$label: HTTP $code, expected $expected"; exit 1; }
}

# cpu_ticks PID: CPU time (user + system, clock ticks) of PID and its children (a gateway and its workers).
cpu_ticks() {
  local pid total=0
  for pid in "$1" $(pgrep -P "$1" || true); do
    # utime and stime: fields 14 and 15, counted after the command name (which may hold spaces).
    total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0)))
  done
  echo "$total"
}

# cpu_us_per_request TICKS REQUESTS: microseconds of CPU per request (robust to other work on the machine,
# unlike req/s: a shared VM slows every process, but a request still costs about the same CPU).
cpu_us_per_request() {
  awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print "n/a" }'
}

# For the benchmarks that alternate wrk runs and compare CPU per request (ab_gateway.sh,
# handlers_on_httptools.sh): print_cpu_header prints the columns; measure_cpu PID KEY LABEL URL [wrk args...]
# runs wrk, prints LABEL's row with the CPU that PID and its children used per request, and adds its req/s
# and CPU to RPS_SUM[KEY] and CPU_SUM[KEY] (associative arrays the caller declares).
print_cpu_header() {
  printf '%-34s %10s %9s %9s %8s %10s\n' target "req/s" "p50 ms" "p99 ms" errors "CPU us/req"
}

measure_cpu() {
  local pid="$1" key="$2" label="$3" before cpu
  shift 3
  before=$(cpu_ticks "$pid")
  run_wrk "$key" "$@"
  cpu=$(cpu_us_per_request $(($(cpu_ticks "$pid") - before)) "$R_REQS")
  printf '%-34s %10s %9s %9s %8s %10s\n' "$label" "$R_RPS" "$R_P50" "$R_P99" "$R_ERR" "$cpu"
  RPS_SUM[$key]=$((${RPS_SUM[$key]:-0} + R_RPS))
  CPU_SUM[$key]=$((${CPU_SUM[$key]:-0} + cpu))
}

# --- Streaming pieces (bench/rss_soak.sh, bench/compare_mod_auth_openidc.sh) ------------------------------
# Before start_nginx: nginx serves files under $WORK/nginx/big/ at /big/, and DEMO_PORT is chosen for the
# demo backend that takes uploads. After start_nginx, stream_routes gives the gateway's /big/ and /upload/
# routes (EXTRA_ROUTES; any body size, long reads); after start_gateway, start_upload_backend starts it.
with_stream_routes() {
  EXTRA_NGINX="location /big/ { root $WORK/nginx; }"
  DEMO_PORT=$(port_to_try) # never a client socket's; another server's would make the demo fail (no retry)
}

stream_routes() {
  printf '%s\n' "  - host: localhost
    path: /big/
    upstream: http://127.0.0.1:$NGINX_PORT
    auth: enforce
    max_body: 0
    read_timeout: 600
  - host: localhost
    path: /upload/
    upstream: http://127.0.0.1:$DEMO_PORT
    auth: enforce
    max_body: 0
    read_timeout: 600"
}

start_upload_backend() { # the demo backend (python -m demo.whoami): its JSON answer counts the body bytes
  "$PY" -m demo.whoami --listen "127.0.0.1:$DEMO_PORT" --jwks-url "$GW_URL/.auth/jwks.json" \
    --issuer "$GW_URL" >"$WORK/demo-backend.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$DEMO_PORT/_demo/status/200"
}

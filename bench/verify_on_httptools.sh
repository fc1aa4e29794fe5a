#!/usr/bin/env bash
# Issue 19's measured alternative for forward-auth: the same /.auth/verify handler and request stages served
# by aiohttp (as the gateway is) and by a protocol on httptools (bench/verify_on_httptools.py), one process,
# one gateway, in alternation; req/s and the process's CPU per request for each.
#
#   bench/verify_on_httptools.sh                     # 5 s per run, 3 rounds; also DURATION, ROUNDS, ACCESS_LOG
#
# Same pieces as run_gateway_bench.sh (Redis, nginx, dev IdP, a real login through a `broker run` gateway whose
# config the measured process loads too: same Redis and keys, so the session is valid in both). Loopback only;
# every process is stopped by PID on exit.
set -euo pipefail
GW_WORKERS=1
DURATION="${DURATION:-5}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROUNDS="${ROUNDS:-3}"

need_apt wrk wrk
need_apt nginx nginx
need_apt redis-server redis-server
need_apt curl curl

EXTRA_SERVER="  trusted_proxies: [127.0.0.1/32]"
start_redis
start_nginx
start_devidp
start_gateway
COOKIE="$(gateway_cookie)"

"$PY" "$REPO/bench/verify_on_httptools.py" --config "$GW_CONFIG" >"$WORK/ports.txt" 2>"$WORK/measured.log" &
MEASURED_PID=$!
PIDS+=("$MEASURED_PID")
for _ in $(seq 300); do [[ -s "$WORK/ports.txt" ]] && break; sleep 0.1; done
read -r AIOHTTP_PORT HTTPTOOLS_PORT <"$WORK/ports.txt"
for name in AIOHTTP HTTPTOOLS; do
  port="${name}_PORT"
  expect_status "verify on $name" 200 -H "Cookie: $COOKIE" -H "X-Original-URL: http://localhost/" \
    "http://localhost:${!port}/.auth/verify"
done

echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS rounds in alternation; one process, access log ${ACCESS_LOG:-true}"
machine_line
printf '%-34s %10s %9s %9s %8s %10s\n' target "req/s" "p50 ms" "p99 ms" errors "CPU us/req"
declare -A RPS_SUM=() CPU_SUM=()
for round in $(seq "$ROUNDS"); do
  for name in AIOHTTP HTTPTOOLS; do
    port="${name}_PORT"
    before=$(cpu_ticks "$MEASURED_PID")
    run_wrk "$name" "http://localhost:${!port}/.auth/verify" -H "Cookie: $COOKIE" -H "X-Original-URL: http://localhost/"
    cpu=$(cpu_us_per_request $(($(cpu_ticks "$MEASURED_PID") - before)) "$R_REQS")
    printf '%-34s %10s %9s %9s %8s %10s\n' "verify on ${name,,}, round $round" "$R_RPS" "$R_P50" "$R_P99" "$R_ERR" "$cpu"
    RPS_SUM[$name]=$((${RPS_SUM[$name]:-0} + R_RPS))
    CPU_SUM[$name]=$((${CPU_SUM[$name]:-0} + cpu))
  done
done
printf 'httptools / aiohttp: req/s %s, CPU per request %s\n' \
  "$(ratio "${RPS_SUM[HTTPTOOLS]}" "${RPS_SUM[AIOHTTP]}")" "$(ratio "${CPU_SUM[HTTPTOOLS]}" "${CPU_SUM[AIOHTTP]}")"

#!/usr/bin/env bash
# Issue 19's measured alternative: the gateway's handlers and request stages, unchanged, served by aiohttp (as
# the gateway is) and by a protocol on httptools (bench/handlers_on_httptools.py), one process, one gateway, in
# alternation; req/s and the process's CPU per request for each: /.auth/verify alone with a hot session, the
# authenticated route proxied to nginx, and a hot bearer client on an api: route.
#
#   bench/handlers_on_httptools.sh                   # 5 s per run, 3 rounds; also DURATION, ROUNDS, ACCESS_LOG
#   KINDS=verify bench/handlers_on_httptools.sh      # some of: verify auth bearer
#
# Same pieces as run_gateway_bench.sh (Redis, nginx, dev IdP, a real login through a `broker run` gateway whose
# config the measured process loads too: same Redis and keys, so the session is valid in both). Loopback only;
# every process is stopped by PID on exit.
set -euo pipefail
GW_WORKERS=1
DURATION="${DURATION:-5}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROUNDS="${ROUNDS:-3}"
KINDS="${KINDS:-verify auth bearer}"

need_apt wrk wrk
need_apt nginx nginx
need_apt redis-server redis-server
need_apt curl curl

start_verify_and_bearer_gateway

"$PY" "$REPO/bench/handlers_on_httptools.py" --config "$GW_CONFIG" >"$WORK/ports.txt" 2>"$WORK/measured.log" &
MEASURED_PID=$!
PIDS+=("$MEASURED_PID")
for _ in $(seq 300); do [[ -s "$WORK/ports.txt" ]] && break; sleep 0.1; done
read -r AIOHTTP_PORT HTTPTOOLS_PORT <"$WORK/ports.txt"
for name in AIOHTTP HTTPTOOLS; do
  port="${name}_PORT"
  expect_status "verify on $name" 200 -H "Cookie: $COOKIE" -H "X-Original-URL: http://localhost/" \
    "http://localhost:${!port}/.auth/verify"
  expect_status "authenticated on $name" 200 -H "Cookie: $COOKIE" "http://localhost:${!port}/"
  expect_status "bearer on $name" 200 -H "Authorization: Bearer $TOKEN" "http://localhost:${!port}/api/"
done
# Both servers must give the proxied route the same body (the measured work is the same).
SIZES="$(for name in AIOHTTP HTTPTOOLS; do
  port="${name}_PORT"
  curl -s -o /dev/null -w '%{size_download} ' -H "Cookie: $COOKIE" "http://localhost:${!port}/"
done)"
read -r SIZE_A SIZE_H <<<"$SIZES"
[[ $SIZE_A == "$SIZE_H" ]] || { log "bodies differ: aiohttp $SIZE_A, httptools $SIZE_H bytes"; exit 1; }

echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS rounds in alternation; one process, access log ${ACCESS_LOG:-true}"
machine_line
print_cpu_header
declare -A RPS_SUM=() CPU_SUM=()
for round in $(seq "$ROUNDS"); do
  for kind in $KINDS; do
    for name in AIOHTTP HTTPTOOLS; do
      port="${name}_PORT"
      case "$kind" in
        verify) args=("http://localhost:${!port}/.auth/verify" -H "Cookie: $COOKIE" -H "X-Original-URL: http://localhost/") ;;
        auth) args=("http://localhost:${!port}/" -H "Cookie: $COOKIE") ;;
        bearer) args=("http://localhost:${!port}/api/" -H "Authorization: Bearer $TOKEN") ;;
        *) log "unknown kind $kind (verify, auth, bearer)"; exit 2 ;;
      esac
      measure_cpu "$MEASURED_PID" "$kind-$name" "$kind on ${name,,}, round $round" "${args[@]}"
    done
  done
done
for kind in $KINDS; do
  printf '%-7s httptools / aiohttp: req/s %s, CPU per request %s (%d -> %d us)\n' "$kind" \
    "$(ratio "${RPS_SUM[$kind-HTTPTOOLS]}" "${RPS_SUM[$kind-AIOHTTP]}")" \
    "$(ratio "${CPU_SUM[$kind-HTTPTOOLS]}" "${CPU_SUM[$kind-AIOHTTP]}")" \
    $((CPU_SUM[$kind-AIOHTTP] / ROUNDS)) $((CPU_SUM[$kind-HTTPTOOLS] / ROUNDS))
done

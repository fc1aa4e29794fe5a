#!/usr/bin/env bash
# Complete logins per second through the dev IdP (issue 7: >= 200/s), and the CPU each part uses.
#
#   bench/login_rate.sh                                  # 32 browsers for 20 s
#   bench/login_rate.sh --concurrency 64 --seconds 10    # any bench/login_rate.py option; also GW_WORKERS=2
#
# Starts Redis, nginx, the dev IdP and the gateway (GW_WORKERS, default 2) like run_gateway_bench.sh, then
# runs bench/login_rate.py against them with their PIDs, so their CPU time (gateway workers included) is
# reported next to the load client's. Loopback only; every process is stopped by PID on exit.
set -euo pipefail
GW_WORKERS="${GW_WORKERS:-2}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_apt nginx nginx
need_apt redis-server redis-server
need_apt curl curl

EXTRA_SERVER="$LOGIN_RATE_UNLIMITED"
start_redis
REDIS_PID="${PIDS[-1]}"
start_nginx
NGINX_PID="${PIDS[-1]}"
start_devidp
IDP_PID="${PIDS[-1]}"
start_gateway
GATEWAY_PID="${PIDS[-1]}"
log "gateway $GW_URL (pid $GATEWAY_PID, $GW_WORKERS workers), dev IdP $IDP_URL (pid $IDP_PID)"
machine_line
"$PY" "$REPO/bench/login_rate.py" --gateway "$GW_URL" --code contoso --user "$BENCH_USER" \
  --pid "gateway=$GATEWAY_PID" --pid "devidp=$IDP_PID" --pid "redis=$REDIS_PID" --pid "nginx=$NGINX_PID" "$@"

#!/usr/bin/env bash
# Where a gateway worker spends its time under wrk load: py-spy samples one worker while wrk hits the
# public route, the authenticated route, /.auth/verify alone (hot session) and a hot bearer client on an
# api: route, and bench/profile_summary.py prints the top functions of each.
#
#   bench/profile_hot_path.sh              # 10 s per target, 1 worker
#   DURATION=5 TOP=25 bench/profile_hot_path.sh   # also GW_WORKERS, THREADS, CONNECTIONS, KEEP_WORK=1
#   TARGETS="verify bearer" bench/profile_hot_path.sh   # some of: public authenticated verify bearer
#
# Same pieces as run_gateway_bench.sh (Redis, nginx, dev IdP, a real login). py-spy is installed into the
# venv when missing; it needs ptrace (root, or kernel.yama.ptrace_scope=0). Loopback only; every process
# is stopped by PID on exit. Raw profiles are kept in $WORK with KEEP_WORK=1 (flamegraph-ready).
set -euo pipefail
GW_WORKERS="${GW_WORKERS:-1}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_apt wrk wrk
need_apt nginx nginx
need_apt redis-server redis-server
need_apt curl curl
[[ -x "$VENV/bin/py-spy" ]] || "$VENV/bin/pip" install --quiet py-spy

start_verify_and_bearer_gateway
GATEWAY_PID="${PIDS[-1]}"
# With workers > 1 the first worker (a child of `broker run`) is sampled; with 1 the process itself serves.
WORKER_PID="$(pgrep -P "$GATEWAY_PID" | head -1 || true)"
WORKER_PID="${WORKER_PID:-$GATEWAY_PID}"
log "sampling gateway worker $WORKER_PID"

profile() { # profile LABEL URL [wrk args...]
  local label="$1" url="$2"
  shift 2
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "$@" "$url" >"$WORK/wrk.$label.txt" 2>&1 &
  local wrk_pid=$!
  sleep 1 # let the load settle before sampling
  "$VENV/bin/py-spy" record --pid "$WORKER_PID" --duration $((DURATION - 2)) --rate 250 --nonblocking \
    --format raw --output "$WORK/profile.$label.txt" >/dev/null 2>&1
  wait "$wrk_pid"
  echo "== $label: $(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.$label.txt") req/s under the profiler"
  "$PY" "$REPO/bench/profile_summary.py" "$WORK/profile.$label.txt" --top "${TOP:-20}"
  echo
}

echo "py-spy, ${DURATION}s per target, wrk -t$THREADS -c$CONNECTIONS; gateway: $GW_WORKERS worker(s), Redis sessions"
machine_line
for target in ${TARGETS:-public authenticated verify bearer}; do
  case "$target" in
    public) profile public "$GW_URL/pub/" ;;
    authenticated) profile authenticated "$GW_URL/" -H "Cookie: $COOKIE" ;;
    verify) profile verify "$GW_URL/.auth/verify" -H "Cookie: $COOKIE" -H "X-Original-URL: http://localhost/" ;;
    bearer) profile bearer "$GW_URL/api/" -H "Authorization: Bearer $TOKEN" ;;
    *) log "unknown target $target (public, authenticated, verify, bearer)"; exit 2 ;;
  esac
done

#!/usr/bin/env bash
# Two versions of the gateway side by side, in alternation, on the same Redis, nginx and dev IdP: the ratio
# of one change, measured so that the machine's drift (other work on a shared VM) hits both alike.
#
#   A_PYTHONPATH=/tmp/old bench/ab_gateway.sh        # A: that checkout's broker/ (git archive <commit> |
#                                                    # tar -x -C /tmp/old), B: this checkout (or B_PYTHONPATH)
#   DURATION=5 ROUNDS=3 A_PYTHONPATH=... bench/ab_gateway.sh   # THREADS, CONNECTIONS, GW_WORKERS, ACCESS_LOG
#   KINDS="auth pub verify" A_PYTHONPATH=... bench/ab_gateway.sh  # which targets (default: auth pub)
#
# Each round: A authenticated, B authenticated, A public route, B public route (wrk, 10 s each by default);
# with KINDS, the kinds named, in that order, each A then B.
# Prints each run with the gateway's CPU time per request (all its processes), the means, and B / A for
# both: on a shared machine req/s moves with everyone else's load, CPU per request much less. Installs wrk, nginx, redis-server and curl when missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${A_PYTHONPATH:?set A_PYTHONPATH to the checkout to compare with}"
B_PYTHONPATH="${B_PYTHONPATH:-$REPO}"
ROUNDS="${ROUNDS:-3}"
KINDS="${KINDS:-auth pub}" # any of: auth pub verify (/.auth/verify alone, hot session, as an ingress asks)
for kind in $KINDS; do
  [[ $kind =~ ^(auth|pub|verify)$ ]] || { echo "unknown kind $kind (auth, pub, verify)" >&2; exit 2; }
done

need_apt wrk wrk
need_apt nginx nginx
need_apt redis-server redis-server
need_apt curl curl

# Verify answers only a trusted ingress: the bench's loopback wrk stands for it (only when verify is measured,
# so the other kinds run with the config of the earlier rounds' figures).
if [[ " $KINDS " == *" verify "* ]]; then EXTRA_SERVER="  trusted_proxies: [127.0.0.1/32]"; fi
start_redis
start_nginx
start_devidp
export PYTHONPATH="$A_PYTHONPATH"
GW_NAME=a
start_gateway
A_URL="$GW_URL" A_PID="${PIDS[-1]}"
A_COOKIE="$(gateway_cookie)"
export PYTHONPATH="$B_PYTHONPATH"
GW_NAME=b
start_gateway
B_URL="$GW_URL" B_PID="${PIDS[-1]}"
B_COOKIE="$(gateway_cookie)"
for side in A B; do
  url="${side}_URL" cookie="${side}_COOKIE"
  expect_status "$side authenticated" 200 -H "Cookie: ${!cookie}" "${!url}/"
  if [[ " $KINDS " == *" verify "* ]]; then
    expect_status "$side verify" 200 -H "Cookie: ${!cookie}" -H "X-Original-URL: http://localhost/" "${!url}/.auth/verify"
  fi
done

echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $ROUNDS rounds in alternation; gateways: ${GW_WORKERS:-2} workers, Redis sessions, access log ${ACCESS_LOG:-true}"
echo "A: $A_PYTHONPATH   B: $B_PYTHONPATH"
machine_line
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
print_cpu_header
declare -A RPS_SUM=() CPU_SUM=()
declare -A KIND_LABEL=([auth]=authenticated [pub]="public route" [verify]="verify alone")
for round in $(seq "$ROUNDS"); do
  for kind in $KINDS; do
    for side in A B; do
      url="${side}_URL" cookie="${side}_COOKIE" pid="${side}_PID"
      case "$kind" in
        auth) args=("${!url}/" -H "Cookie: ${!cookie}") ;;
        pub) args=("${!url}/pub/") ;;
        verify) args=("${!url}/.auth/verify" -H "Cookie: ${!cookie}" -H "X-Original-URL: http://localhost/") ;;
      esac
      measure_cpu "${!pid}" "$side-$kind" "$side ${KIND_LABEL[$kind]}, round $round" "${args[@]}"
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
for kind in $KINDS; do
  a_rps=${RPS_SUM[A-$kind]} b_rps=${RPS_SUM[B-$kind]} a_cpu=${CPU_SUM[A-$kind]} b_cpu=${CPU_SUM[B-$kind]}
  printf '%-14s req/s A %6d, B %6d, B / A %s;   CPU us/req A %5d, B %5d, B / A %s\n' \
    "${KIND_LABEL[$kind]}" \
    $((a_rps / ROUNDS)) $((b_rps / ROUNDS)) "$(ratio "$b_rps" "$a_rps")" \
    $((a_cpu / ROUNDS)) $((b_cpu / ROUNDS)) "$(ratio "$b_cpu" "$a_cpu")"
done

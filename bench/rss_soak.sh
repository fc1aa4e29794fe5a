#!/usr/bin/env bash
# Gateway memory under load (issue 7: "RSS flat (within 10%) across a 5-minute soak at full load" and
# "flat while streaming a 1 GB body").
#
#   bench/rss_soak.sh                         # 300 s soak, then 1 GiB down, 1 GiB up (Content-Length), 1 GiB up (chunked)
#   SOAK_SECONDS=120 bench/rss_soak.sh        # also GW_WORKERS=2 THREADS=2 CONNECTIONS=64 BIG=1G SKIP_SOAK=1
#                                             # SKIP_STREAM=1 SHOW_WRK=1 KEEP_WORK=1
#
# (a) Soak: wrk -t$THREADS -c$CONNECTIONS against the authenticated route (GET / with a session cookie from a
#     real dev IdP login, proxied to nginx) for SOAK_SECONDS (+2 s so the last sample is under load); the
#     RSS (VmRSS from /proc/PID/status) of the gateway's parent and of each worker every 10 s; a table, then
#     first / at 30 s (after warm-up) / last / max per process and the change from 30 s to the end.
# (b) Streaming, one transfer at a time through authenticated routes with max_body: 0, RSS every 0.5 s:
#     - download: nginx serves a sparse $BIG file (truncate -s) at /big/, curl -o /dev/null;
#     - upload: POST of a sparse $BIG file (Content-Length) and of $BIG from /dev/zero (chunked) to
#       /upload/, proxied to `python -m demo.whoami`, whose JSON answer says how many body bytes arrived.
#     Each transfer is checked: HTTP status and byte counts (curl's and, for uploads, the backend's).
# Same Redis, nginx, dev IdP and gateway as run_gateway_bench.sh, plus the demo backend. Loopback only;
# every process it starts is stopped by PID on exit.
set -euo pipefail
GW_WORKERS="${GW_WORKERS:-2}"
SOAK_SECONDS="${SOAK_SECONDS:-300}"
BIG="${BIG:-1G}"
SOAK_EVERY=10
STREAM_EVERY=0.5
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_apt wrk wrk
need_apt nginx nginx
need_apt redis-server redis-server
need_apt curl curl

# /big/<file> -> $WORK/nginx/big/<file>; the gateway routes /big/ and /upload/ allow any body size.
with_stream_routes
start_redis
start_nginx
EXTRA_ROUTES="$(stream_routes)"
start_devidp
start_gateway
GATEWAY_PID="${PIDS[-1]}"
start_upload_backend

COOKIE="$(gateway_cookie)"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE" "$GW_URL/")
[[ $code == 200 ]] || { log "authenticated request got HTTP $code"; exit 1; }

mapfile -t WORKERS < <(pgrep -P "$GATEWAY_PID" | sort -n)
GW_PIDS=("$GATEWAY_PID" "${WORKERS[@]}")
GW_NAMES=(parent)
for i in "${!WORKERS[@]}"; do GW_NAMES+=("worker$((i + 1))"); done
log "gateway $GW_URL: parent $GATEWAY_PID, workers ${WORKERS[*]:-none (1 process)}"

rss_mb() { # rss_mb PID: VmRSS in MB (1 decimal), or "gone"
  awk '/^VmRSS:/ { printf "%.1f", $2 / 1024; found = 1 } END { if (!found) print "gone" }' \
    "/proc/$1/status" 2>/dev/null || echo gone
}

sample_line() { # sample_line LABEL: "LABEL rss rss ..." for GW_PIDS
  local line="$1" pid
  for pid in "${GW_PIDS[@]}"; do line+=" $(rss_mb "$pid")"; done
  echo "$line"
}

sleep_until() { # sleep_until EPOCH_SECONDS (fractional)
  local left
  left=$(awk -v t="$1" -v now="$EPOCHREALTIME" 'BEGIN { d = t - now; printf "%.3f", (d > 0 ? d : 0) }')
  sleep "$left"
}

# summary FILE: rows "t rss rss ..."; first, row at t=30 (or the first), last, max, change 30 s -> last.
summary() {
  awk -v names="${GW_NAMES[*]}" '
    BEGIN { n = split(names, name, " ") }
    { rows++; for (i = 1; i <= n; i++) { v[rows, i] = $(i + 1) } t[rows] = $1 }
    END {
      ref = 1
      for (r = 1; r <= rows; r++) if (t[r] + 0 >= 30) { ref = r; break }
      printf "%-10s %9s %9s %9s %9s %14s\n", "process", "first", "t=" t[ref] "s", "last", "max", "change " t[ref] "s->end"
      worst = 0
      for (i = 1; i <= n; i++) {
        max = 0
        for (r = 1; r <= rows; r++) if (v[r, i] + 0 > max) max = v[r, i] + 0
        base = v[ref, i] + 0; last = v[rows, i] + 0
        pct = base > 0 ? (last - base) / base * 100 : 0
        if (pct > worst) worst = pct
        printf "%-10s %9s %9s %9s %9.1f %13.1f%%\n", name[i], v[1, i], v[ref, i], v[rows, i], max, pct
      }
      printf "largest growth after warm-up: %.1f%% (issue 7 target: within 10%%) -> %s\n", worst,
        (worst <= 10 ? "flat" : "NOT flat")
    }' "$1"
}

echo "gateway: $GW_WORKERS worker(s), Redis sessions; RSS = VmRSS in MB"
machine_line
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ -z "${SKIP_SOAK:-}" ]]; then
  echo
  echo "== (a) soak: wrk -t$THREADS -c$CONNECTIONS -d$((SOAK_SECONDS + 2))s on the authenticated route, RSS every ${SOAK_EVERY}s"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$((SOAK_SECONDS + 2))s" --latency -H "Cookie: $COOKIE" "$GW_URL/" \
    >"$WORK/wrk.soak.txt" 2>&1 &
  WRK_PID=$!
  PIDS+=("$WRK_PID")
  start=$EPOCHREALTIME
  printf '%6s' "t (s)"
  printf ' %9s' "${GW_NAMES[@]}"
  echo
  : >"$WORK/soak.rss"
  for ((t = 0; t <= SOAK_SECONDS; t += SOAK_EVERY)); do
    sleep_until "$(awk -v s="$start" -v t="$t" 'BEGIN { printf "%.3f", s + t }')"
    sample_line "$t" | tee -a "$WORK/soak.rss" | awk '{ printf "%6s", $1; for (i = 2; i <= NF; i++) printf " %9s", $i; print "" }'
  done
  wait "$WRK_PID" || { cat "$WORK/wrk.soak.txt" >&2; exit 1; }
  if [[ -n "${SHOW_WRK:-}" ]]; then cat "$WORK/wrk.soak.txt" >&2; fi
  awk '
    /^ *50%/ { p50 = $2 } /^ *99%/ { p99 = $2 } /^Requests\/sec:/ { rps = $2 }
    /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { err += $5 }
    END { printf "load: %.0f req/s, p50 %s, p99 %s, errors %d\n", rps, p50, p99, err }' "$WORK/wrk.soak.txt"
  summary "$WORK/soak.rss"
  echo "load average after the soak: $(cut -d' ' -f1-3 /proc/loadavg)"
fi

sampler() { # sampler FILE: RSS of GW_PIDS every STREAM_EVERY s until killed
  while true; do
    sample_line "$EPOCHREALTIME" >>"$1"
    sleep "$STREAM_EVERY"
  done
}

# stream LABEL EXPECTED_BYTES CURL_ARGS...: one transfer with RSS sampling; prints before / max / after.
stream() {
  local label="$1" expect="$2" out="$WORK/stream.$RANDOM"
  shift 2
  sample_line before >"$out.rss"
  sampler "$out.rss" &
  local sampler_pid=$!
  PIDS+=("$sampler_pid")
  local stats body="$out.body"
  [[ $label == upload* ]] || body=/dev/null # a download's 1 GiB is not written anywhere
  stats=$(curl -sS --max-time 900 -H "Cookie: $COOKIE" -o "$body" \
    -w '%{http_code} %{size_download} %{size_upload} %{time_total}' "$@") || stats="curl-failed 0 0 0"
  sleep 1 # let buffers drain before the "after" sample
  kill "$sampler_pid" 2>/dev/null || true
  wait "$sampler_pid" 2>/dev/null || true
  sample_line after >>"$out.rss"
  local status down up secs got
  read -r status down up secs <<<"$stats"
  got=$((down > up ? down : up))
  if [[ $label == upload* ]]; then
    # The backend's count of the body bytes it received.
    got=$(grep -o '"body_bytes": *[0-9]*' "$out.body" | grep -o '[0-9]*$' || echo 0)
  fi
  local ok="ok"
  [[ $status == 200 && $got == "$expect" && $((down > up ? down : up)) -ge $expect ]] || ok="FAILED"
  echo
  echo "== $label: HTTP $status, $got of $expect bytes, $(awk -v b="$expect" -v s="$secs" \
    'BEGIN { printf "%.1f s, %.0f MB/s", s, (s > 0 ? b / s / 1e6 : 0) }') [$ok]"
  if [[ $ok != ok && -f $out.body ]]; then head -c 600 "$out.body" >&2; fi
  awk -v names="${GW_NAMES[*]}" '
    BEGIN { n = split(names, name, " ") }
    $1 == "before" { for (i = 1; i <= n; i++) before[i] = $(i + 1) }
    $1 == "after" { for (i = 1; i <= n; i++) after[i] = $(i + 1) }
    { for (i = 1; i <= n; i++) if ($(i + 1) + 0 > max[i]) max[i] = $(i + 1) + 0; samples++ }
    END {
      printf "%-10s %9s %9s %9s %12s   (%d samples, every '"$STREAM_EVERY"' s)\n", "process", "before", "max", "after", "max-before", samples
      for (i = 1; i <= n; i++)
        printf "%-10s %9s %9.1f %9s %+11.1f\n", name[i], before[i], max[i], after[i], max[i] - before[i]
    }' "$out.rss"
  [[ $ok == ok ]]
}

if [[ -z "${SKIP_STREAM:-}" ]]; then
  mkdir -p "$WORK/nginx/big"
  truncate -s "$BIG" "$WORK/nginx/big/big.bin" "$WORK/upload.bin" # sparse: no disk used
  chmod -R a+rX "$WORK/nginx/big"
  BYTES=$(stat -c %s "$WORK/upload.bin")
  echo
  echo "== (b) streaming $BIG ($BYTES bytes) through the gateway, RSS every ${STREAM_EVERY}s"
  failed=0
  stream "download (nginx /big/, Content-Length)" "$BYTES" "$GW_URL/big/big.bin" || failed=1
  stream "upload (POST /upload/, Content-Length)" "$BYTES" -X POST -H 'Accept: application/json' \
    -H 'Expect:' -T "$WORK/upload.bin" "$GW_URL/upload/?format=json" || failed=1
  stream "upload (POST /upload/, chunked)" "$BYTES" -X POST -H 'Accept: application/json' \
    -H 'Expect:' -T - "$GW_URL/upload/?format=json" < <(head -c "$BYTES" /dev/zero) || failed=1
  echo "load average after streaming: $(cut -d' ' -f1-3 /proc/loadavg)"
  exit "$failed"
fi

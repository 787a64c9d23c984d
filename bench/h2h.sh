#!/usr/bin/env bash
# Usage: bench/h2h.sh [--rounds N] [--seconds S] [--conns C] [--hosts N]
#                     PEER_A PEER_B
#   PEER: tracking[=BINARY]  lopache with its default route cache
#         ttl[=BINARY]       lopache with route_cache_ms = 1000
#         lookup[=BINARY]    lopache with route_cache = "off"
#         nginx              nginx as in bench/run.sh (bench/common.sh)
#   BINARY defaults to target/release/lopache.
#
# Head to head: A and B serve at the same time, each its own wrk with C
# connections over the same N hosts, for S seconds; then again with B's wrk
# started first; N rounds. On this VM one 5 s run differs from the next by
# up to 30 % (the whole VM speeds up and slows down), which drowns a
# difference of a few per cent between runs taken in turn (bench/run.sh,
# bench/pairs.sh). Measured together, both see the same VM, so the ratio of
# their req/s is how much more one serves with the CPU the scheduler shares
# out: repeated, it varies by 1-2 %. That share need not be equal (nginx's
# workers got 4-5 % more CPU than lopache's shards here), so each peer's CPU
# time per request (its processes' CPU over the requests its wrk counted) is
# measured too: the cost of a request, whatever the share. Prints each run
# and the median (lowest-highest) ratios A / B of req/s and CPU per request.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
ROUNDS=6 SECS=5 CONNS=128 HOSTS=1000
load_options "bench/h2h.sh [--rounds N] [--seconds S] [--conns C] [--hosts N] PEER_A PEER_B" 2 2 "$@"
set -- "${ARGS[@]}"
start_hosts_setup

# Starts peer $2 (a PEER spec) as "$1"; sets PORT[$1] and PID[$1].
declare -A PORT PID
start_peer() {
  local name=$1 kind=${2%%=*} bin=target/release/lopache port
  [[ $2 == *=* ]] && bin=${2#*=}
  port=$(free_port); PORT[$name]=$port
  case $kind in
    tracking) write_lopache_conf "$name" "$REDIS" "$port" ;;
    ttl) write_lopache_conf "$name" "$REDIS" "$port" "route_cache_ms = 1000" ;;
    lookup) write_lopache_conf "$name" "$REDIS" "$port" 'route_cache = "off"' ;;
    nginx)
      write_nginx_proxy_conf 2 "$port" "$BACKEND"
      mv "$WORK/nginx.conf" "$WORK/$name.conf"
      sed -i "s|$WORK/nginx.pid|$WORK/$name.pid|" "$WORK/$name.conf"
      nginx -c "$WORK/$name.conf" & PIDS+=($!); PID[$name]=$!
      return ;;
    *) echo "unknown peer $2" >&2; exit 2 ;;
  esac
  [ -x "$bin" ] || { echo "$bin: no such binary (cargo build --release)" >&2; exit 2; }
  "$bin" --config "$WORK/$name.toml" 2>"$WORK/$name.log" & PIDS+=($!); PID[$name]=$!
}
start_peer a "$1"
start_peer b "$2"
wait_port "${PORT[a]}"; wait_port "${PORT[b]}"
load() { wrk -t1 -c"$CONNS" -d"$1" -s "$WORK/hosts.lua" "http://127.0.0.1:${PORT[$2]}/"; }
# Warm up pools, Redis connections and route caches.
load 1s a >/dev/null; load 1s b >/dev/null
rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
echo "A = $1, B = $2; $ROUNDS rounds of ${SECS} s, $CONNS connections each, $HOSTS hosts"
# A peer's processes: its master and workers (threads included).
peer_pids() { echo "${PID[$1]} $(children "${PID[$1]}")"; }
pids_a=$(peer_pids a) pids_b=$(peer_pids b)
for r in $(seq "$ROUNDS"); do
  for first in a b; do
    second=$([ $first = a ] && echo b || echo a)
    ta=$(cpu_ticks $pids_a); tb=$(cpu_ticks $pids_b)
    load "${SECS}s" $first > "$WORK/$first.out" & pid=$!
    load "${SECS}s" $second > "$WORK/$second.out"
    wait $pid
    ua=$(us_per_request $(($(cpu_ticks $pids_a) - ta)) "$(wrk_requests "$WORK/a.out")")
    ub=$(us_per_request $(($(cpu_ticks $pids_b) - tb)) "$(wrk_requests "$WORK/b.out")")
    echo "$r $first $(rps "$WORK/a.out") $(rps "$WORK/b.out") $ua $ub"
  done
done | tee "$WORK/runs" | awk '{ printf "round %d, %s first: A %8.0f req/s %6.2f us/req  B %8.0f req/s %6.2f us/req  A/B %.3f\n", $1, toupper($2), $3, $5, $4, $6, $3 / $4 }'
python3 - "$WORK/runs" <<'PY'
import statistics, sys
runs = [[float(x) for x in line.split()[2:]] for line in open(sys.argv[1])]
def summary(ratios):
    return f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"
print(f"A/B req/s median {summary([a / b for a, b, _, _ in runs])} over {len(runs)} runs")
print(f"A/B CPU per request median {summary([ua / ub for _, _, ua, ub in runs])}")
PY

#!/usr/bin/env bash
# Usage: bench/pairs.sh [--rounds N] [--seconds S] [--conns C] [--hosts N]
#                       BINARY [BINARY...]
#
# Two (or more) lopache builds and nginx, measured in turn every S seconds
# for N rounds against one backend and one Redis, so that drift on a shared
# box (another process, CPU frequency) hits all of them alike. For deciding
# whether a change helps: `bench/run.sh` compares peers, this compares builds.
# Prints each run, then per build the median req/s and CPU per request and
# the median (lowest-highest) over rounds of its ratio to nginx's run in the
# same round. Each build runs with tracking (the default), 2 shards.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
ROUNDS=8 SECS=5 CONNS=256 HOSTS=1000
load_options "bench/pairs.sh [--rounds N] [--seconds S] [--conns C] [--hosts N] BINARY [BINARY...]" 1 99 "$@"
set -- "${ARGS[@]}"
start_hosts_setup

NAMES=()
declare -A PORT PID
n=0
for bin in "$@"; do
  n=$((n + 1)); name="b$n"; port=$(free_port)
  write_lopache_conf "$name" "$REDIS" "$port"
  "$bin" --config "$WORK/$name.toml" 2>"$WORK/$name.log" & PIDS+=($!)
  PID[$name]=$! PORT[$name]=$port; NAMES+=("$name")
  echo "$name = $bin"
done
port=$(free_port)
write_nginx_proxy_conf 2 "$port" "$BACKEND"
nginx -c "$WORK/nginx.conf" & PIDS+=($!)
PID[nginx]=$! PORT[nginx]=$port; NAMES+=(nginx)
for name in "${NAMES[@]}"; do wait_port "${PORT[$name]}"; done
# Warm up pools, Redis connections and route caches.
for name in "${NAMES[@]}"; do
  wrk -t1 -c"$CONNS" -d1s -s "$WORK/hosts.lua" "http://127.0.0.1:${PORT[$name]}/" >/dev/null
done
for r in $(seq "$ROUNDS"); do
  for name in "${NAMES[@]}"; do
    pids="${PID[$name]} $(children "${PID[$name]}")"
    t0=$(cpu_ticks $pids)
    out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$WORK/hosts.lua" "http://127.0.0.1:${PORT[$name]}/")
    t1=$(cpu_ticks $pids)
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    echo "$r $name $rps $(us_per_request $((t1 - t0)) "$(wrk_requests <(echo "$out"))")"
  done
done | tee "$WORK/runs" | awk '{ printf "round %s %-6s %8s req/s  %6s us/req\n", $1, $2, $3, $4 }'
python3 - "$WORK/runs" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r, name, rps, us = line.split()
    runs.setdefault(name, {})[r] = (float(rps), float(us))
nginx = runs["nginx"]
for name, by_round in runs.items():
    rps = statistics.median(v[0] for v in by_round.values())
    us = statistics.median(v[1] for v in by_round.values())
    ratios = [v[0] / nginx[r][0] for r, v in by_round.items()]
    print(f"{name:6} {rps:9.0f} req/s  {us:6.2f} us/req  x nginx {statistics.median(ratios):.3f} "
          f"({min(ratios):.2f}-{max(ratios):.2f})")
PY

#!/usr/bin/env bash
# Usage: bench/cpu_per_request.sh URL HOST_HEADER SECONDS CONNS PID [PID...]
# Runs wrk against URL and prints req/s and, for each PID, the CPU time it used
# per request (user+system, from /proc/PID/stat), in microseconds.
set -euo pipefail
source "$(dirname "$0")/common.sh"  # cpu_ticks, us_per_request
url=$1 host=$2 secs=$3 conns=$4; shift 4
lua=$(mktemp --suffix=.lua)
trap 'rm -f "$lua"' EXIT
printf 'wrk.headers["Host"] = "%s"\n' "$host" > "$lua"
declare -A before
for p in "$@"; do before[$p]=$(cpu_ticks "$p"); done
out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$lua" "$url")
reqs=$(wrk_requests <(echo "$out"))
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
errors=$(echo "$out" | grep -E "Non-2xx|Socket errors" || true)
printf 'req/s %s  p99 %s  requests %s %s\n' "$rps" "$p99" "$reqs" "$errors"
for p in "$@"; do
  used=$(( $(cpu_ticks "$p") - ${before[$p]} ))
  printf '  %-16s pid %-7s %s us/request\n' "$(cat /proc/$p/comm)" "$p" "$(us_per_request "$used" "$reqs")"
done

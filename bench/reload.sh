#!/usr/bin/env bash
# Reloads and a binary upgrade under load: wrk drives keep-alive GETs through
# lopache while this script sends RELOADS SIGHUPs (each waiting for the new
# worker to serve) and then one SIGUSR2 to a copy of the binary replaced on
# disk. Prints wrk's totals: requests, socket errors and non-2xx responses,
# which must all be zero for the run to pass (exit 1 otherwise).
# Usage: bench/reload.sh [RELOADS] [CONNS]
set -euo pipefail
cd "$(dirname "$0")/.."
RELOADS=${1:-10} CONNS=${2:-64}
for tool in nginx redis-server wrk python3; do command -v "$tool" >/dev/null || { echo "missing $tool (bench/run.sh installs them)"; exit 1; }; done
cargo build --release --quiet
WORK=$(mktemp -d /tmp/lopache-reload.XXXXXX)
source bench/common.sh
BACKEND=$(free_port) REDIS=$(free_port) LOPACHE=$(free_port)
start_backend "$BACKEND"
start_redis "$REDIS" bench.local "127.0.0.1:$BACKEND"
printf 'driver = "redis://127.0.0.1:%s"\n[server]\naccess_log = "none"\nworkers = 2\n[http]\nport = %s\nbind = ["127.0.0.1"]\n' "$REDIS" "$LOPACHE" > "$WORK/lopache.toml"
cp target/release/lopache "$WORK/lopache"
"$WORK/lopache" --config "$WORK/lopache.toml" 2>"$WORK/lopache.log" & PIDS+=($!); MASTER=$!
wait_port "$LOPACHE"
served() { grep -c " serving (" "$WORK/lopache.log" || true; }
wait_served() {
  for _ in $(seq 400); do [ "$(served)" -ge "$1" ] && return 0; sleep 0.05; done
  echo "no new worker after signal; log:" >&2; cat "$WORK/lopache.log" >&2; exit 1
}
SECS=$((RELOADS + 6))
cat > "$WORK/host.lua" <<'LUA'
wrk.headers["Host"] = "bench.local"
LUA
wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$WORK/host.lua" "http://127.0.0.1:$LOPACHE/" > "$WORK/wrk.txt" & WRK=$!
sleep 2
for i in $(seq "$RELOADS"); do
  kill -HUP "$MASTER"; wait_served $((i + 1)); sleep 0.5
done
cp target/release/lopache "$WORK/lopache.new" && mv "$WORK/lopache.new" "$WORK/lopache"
kill -USR2 "$MASTER"; wait_served $((RELOADS + 2))
# The new binary runs as a new master (the old one retires): stop it at exit.
for _ in $(seq 200); do
  NEW_MASTER=$(sed -n 's/.*upgrade: master \([0-9]*\) serving.*/\1/p' "$WORK/lopache.log" | head -1)
  if [ -n "$NEW_MASTER" ]; then PIDS+=("$NEW_MASTER"); break; fi
  sleep 0.05
done
wait "$WRK"
cat "$WORK/wrk.txt"
requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
errors=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$WORK/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $5}' "$WORK/wrk.txt")
echo "reloads: $RELOADS, upgrades: 1, workers served: $(served), requests: $requests, socket errors: ${errors:-0}, non-2xx: ${non2xx:-0}"
[ "${errors:-0}" = 0 ] && [ "${non2xx:-0}" = 0 ]

#!/usr/bin/env bash
# WebSocket echo through lopache vs direct vs nginx: CONNS tunnels each send a
# message and wait for its echo in a loop. Prints messages/s, p50 and p99 (ms)
# and the ratios. Then opens IDLE tunnels through each proxy, one message each,
# holds them and prints the proxy's PSS growth per idle tunnel.
# Usage: bench/websocket.sh [SECONDS] [CONNS] [SIZE] [IDLE]   (5 64 128 1000)
#        LOPACHE_BIN=path runs that lopache binary instead (A/B comparisons).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5} CONNS=${2:-64} SIZE=${3:-128} IDLE=${4:-1000}
for tool in nginx redis-server python3; do command -v "$tool" >/dev/null || { echo "missing $tool"; exit 1; }; done
cargo build --release --quiet
cargo build --release --quiet --example ws_bench
WORK=$(mktemp -d /tmp/lopache-ws.XXXXXX)
source bench/common.sh
ECHO=$(free_port) REDIS=$(free_port) LOPACHE=$(free_port) NGINX=$(free_port)
./target/release/examples/ws_bench serve "$ECHO" & PIDS+=($!)
wait_port "$ECHO"
start_redis "$REDIS" ws.local "127.0.0.1:$ECHO"
printf 'driver = "redis://127.0.0.1:%s"\n[server]\naccess_log = "none"\nworkers = 2\n[http]\nport = %s\nbind = ["127.0.0.1"]\n' "$REDIS" "$LOPACHE" > "$WORK/lopache.toml"
"${LOPACHE_BIN:-./target/release/lopache}" --config "$WORK/lopache.toml" 2>"$WORK/lopache.log" & PIDS+=($!); LOPACHE_PID=$!
cat > "$WORK/nginx.conf" <<CONF
worker_processes 2; daemon off; pid $WORK/n.pid; error_log $WORK/n.err;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$NGINX;
    location / { proxy_pass http://127.0.0.1:$ECHO; proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection "upgrade"; proxy_read_timeout 3600s; } } }
CONF
nginx -c "$WORK/nginx.conf" & PIDS+=($!); NGINX_PID=$!
wait_port "$LOPACHE"; wait_port "$NGINX"
declare -A RES
for peer in direct:$ECHO lopache:$LOPACHE nginx:$NGINX; do
  name=${peer%%:*} port=${peer#*:}
  RES[$name]=$(./target/release/examples/ws_bench load "127.0.0.1:$port" ws.local "$CONNS" "$SECS" "$SIZE")
done
printf '%-8s %12s %9s %9s\n' peer "messages/s" "p50 ms" "p99 ms"
for name in direct lopache nginx; do
  read -r rate p50 p99 <<< "${RES[$name]}"
  printf '%-8s %12s %9s %9s\n' "$name" "$rate" "$p50" "$p99"
done
read -r l _ lp99 <<< "${RES[lopache]}"; read -r d _ _ <<< "${RES[direct]}"; read -r n _ np99 <<< "${RES[nginx]}"
awk -v l="$l" -v d="$d" -v n="$n" -v lp="$lp99" -v np="$np99" \
  'BEGIN { printf "lopache: %.2f x direct, %.2f x nginx; p99 %.2f x nginx\n", l / d, l / n, lp / np }'
echo "($CONNS tunnels, $SIZE-byte messages, ${SECS}s each, $(date -u '+%Y-%m-%d'))"

# Memory per idle tunnel: PSS of the proxy (master and workers) before and
# while IDLE tunnels sit open.
for peer in lopache:$LOPACHE:$LOPACHE_PID nginx:$NGINX:$NGINX_PID; do
  IFS=: read -r name port pid <<< "$peer"
  pids="$pid $(children "$pid")"
  before=$(pss_kb $pids)
  flag="$WORK/hold-$name"
  ./target/release/examples/ws_bench hold "127.0.0.1:$port" ws.local "$IDLE" "$flag" & holder=$!
  for _ in $(seq 600); do [ -e "$flag" ] && break; sleep 0.1; done
  [ -e "$flag" ] || { echo "$name: $IDLE tunnels never opened" >&2; exit 1; }
  sleep 1.5  # settle: allocators hand back what the burst freed
  after=$(pss_kb $pids)
  rm -f "$flag"; wait "$holder"
  awk -v a="$after" -v b="$before" -v n="$IDLE" -v p="$name" \
    'BEGIN { printf "%-8s %.2f KB per idle tunnel (PSS %d -> %d KB, %d tunnels)\n", p, (a - b) / n, b, a, n }'
done

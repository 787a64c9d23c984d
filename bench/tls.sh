#!/usr/bin/env bash
# TLS comparison: lopache and nginx terminating TLS with the same ECDSA P-256
# certificate in front of the same 5-byte nginx backend. Two wrk runs each:
# keep-alive HTTPS requests, and a new TLS handshake per request
# (Connection: close). Prints req/s and the lopache/nginx ratios.
# Usage: bench/tls.sh [SECONDS]   (default 5)
#        LOPACHE_BIN=path runs that lopache binary instead (A/B comparisons).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
for tool in wrk nginx redis-server openssl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (bench/run.sh installs the rest; apt-get install openssl)"; exit 1; }
done
cargo build --release --quiet
WORK=$(mktemp -d /tmp/lopache-tls.XXXXXX)
source bench/common.sh

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=bench.local" -addext "subjectAltName=DNS:bench.local" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
BACKEND=$(free_port) REDIS=$(free_port) LOPACHE=$(free_port) NGINX=$(free_port)
start_backend "$BACKEND"
start_redis "$REDIS" bench.local "127.0.0.1:$BACKEND"
cat > "$WORK/lopache.toml" <<CONF
driver = "redis://127.0.0.1:$REDIS"
[server]
access_log = "none"  # the peers log nothing either
workers = 2
[http]
bind = []
[https]
port = $LOPACHE
bind = ["127.0.0.1"]
cert = "$WORK/cert.pem"
key = "$WORK/key.pem"
CONF
"${LOPACHE_BIN:-./target/release/lopache}" --config "$WORK/lopache.toml" 2>"$WORK/lopache.log" & PIDS+=($!)
cat > "$WORK/nginx.conf" <<CONF
worker_processes 2; daemon off; pid $WORK/n.pid; error_log $WORK/n.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream b { server 127.0.0.1:$BACKEND; keepalive 256; }
  server { listen 127.0.0.1:$NGINX ssl; ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
nginx -c "$WORK/nginx.conf" & PIDS+=($!)
wait_port "$LOPACHE"; wait_port "$NGINX"
printf 'wrk.headers["Host"] = "bench.local"\n' > "$WORK/ka.lua"
printf 'wrk.headers["Host"] = "bench.local"\nwrk.headers["Connection"] = "close"\n' > "$WORK/close.lua"
rps() { wrk -t1 -c"$2" -d"${SECS}s" -s "$WORK/$3.lua" "https://127.0.0.1:$1/" | awk '/Requests\/sec/ {print $2}'; }
for scenario in "ka 64" "close 16"; do
  set -- $scenario
  l=$(rps "$LOPACHE" "$2" "$1"); n=$(rps "$NGINX" "$2" "$1")
  label=$([ "$1" = ka ] && echo "keep-alive HTTPS requests" || echo "new TLS handshake per request")
  awk -v l="$l" -v n="$n" -v s="$label" -v c="$2" 'BEGIN { printf "%-32s %3s conns: lopache %9.0f req/s  nginx %9.0f req/s  ratio %.2f\n", s, c, l, n, l / n }'
done

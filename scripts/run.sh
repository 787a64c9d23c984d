#!/usr/bin/env bash
# Runs lopache locally: installs what is missing, starts a local Redis if none
# answers on 127.0.0.1:6379, seeds the demo frontend `demo.local` pointing at a
# tiny demo backend on 127.0.0.1:8081, and starts the proxy on port 8080.
#   curl -H 'Host: demo.local' http://127.0.0.1:8080/
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null || ! command -v python3 >/dev/null; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools python3 >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "cargo is required (install Rust with rustup)" >&2
  exit 1
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "== starting a local redis-server on 127.0.0.1:6379"
  redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save "" --appendonly no --logfile /tmp/lopache-demo-redis.log
  for _ in $(seq 100); do redis-cli -p 6379 ping >/dev/null 2>&1 && break; sleep 0.05; done
fi

# The demo backend: a static page served by Python on 127.0.0.1:8081.
if ! (exec 3<>/dev/tcp/127.0.0.1/8081) 2>/dev/null; then
  mkdir -p /tmp/lopache-demo-backend
  echo "Hello from the lopache demo backend" > /tmp/lopache-demo-backend/index.html
  (cd /tmp/lopache-demo-backend && nohup python3 -m http.server 8081 --bind 127.0.0.1 >/tmp/lopache-demo-backend.log 2>&1 &)
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8081) 2>/dev/null && break; sleep 0.05; done
fi

redis-cli -p 6379 del frontend:demo.local >/dev/null
redis-cli -p 6379 rpush frontend:demo.local demo http://127.0.0.1:8081 >/dev/null
echo "== demo frontend: demo.local -> http://127.0.0.1:8081"

cargo build --release --quiet
echo "== starting lopache (try: curl -H 'Host: demo.local' http://127.0.0.1:8080/)"
exec ./target/release/lopache --config config.toml

#!/usr/bin/env bash
# Runs lopache locally with a demo site: installs what is missing, starts a
# private Redis (on a free port, unless LOPACHE_REDIS=host:port names one to
# use) and a tiny demo backend, seeds the frontend `demo.local`, builds and
# starts lopache on config.toml (port 8080). Ctrl-C stops everything it
# started.
#   curl -H 'Host: demo.local' http://127.0.0.1:8080/
# LOPACHE_BUILD=debug uses a debug build, LOPACHE_BIN=path a binary already
# built (no cargo); LOPACHE_HTTP_PORT=N listens on N instead of config.toml's
# port (scripts/test.sh runs it so, also as an unprivileged user).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null || ! command -v python3 >/dev/null; then
  echo "== installing redis-server, redis-tools, python3"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools python3 >/dev/null
fi
if [ -z "${LOPACHE_BIN:-}" ] && ! command -v cargo >/dev/null; then
  echo "cargo is required (install Rust with rustup)" >&2
  exit 1
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "$2 did not open port $1" >&2
  exit 1
}

WORK=$(mktemp -d /tmp/lopache-run.XXXXXX)
PIDS=()
stop_all() {
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
  echo "== stopped lopache, the demo backend and the private Redis"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

if [ -n "${LOPACHE_REDIS:-}" ]; then
  REDIS_HOST=${LOPACHE_REDIS%:*} REDIS_PORT=${LOPACHE_REDIS##*:}
  echo "== using the Redis at $REDIS_HOST:$REDIS_PORT (LOPACHE_REDIS)"
else
  REDIS_HOST=127.0.0.1 REDIS_PORT=$(free_port)
  echo "== starting a private redis-server on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --logfile "$WORK/redis.log" &
  PIDS+=($!)
  wait_port "$REDIS_PORT" redis-server
fi

# The demo backend: a static page served by Python.
BACKEND_PORT=$(free_port)
mkdir -p "$WORK/site"
echo "Hello from the lopache demo backend" > "$WORK/site/index.html"
python3 -m http.server "$BACKEND_PORT" --bind 127.0.0.1 --directory "$WORK/site" >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
wait_port "$BACKEND_PORT" "the demo backend"

redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" del frontend:demo.local >/dev/null
redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" rpush frontend:demo.local demo "http://127.0.0.1:$BACKEND_PORT" >/dev/null
echo "== demo frontend: demo.local -> http://127.0.0.1:$BACKEND_PORT"

# config.toml as it is, pointed at this Redis (and port, if asked).
sed -e "s|^driver = .*|driver = \"redis://$REDIS_HOST:$REDIS_PORT\"|" \
    -e "${LOPACHE_HTTP_PORT:+s|^port = 8080 |port = $LOPACHE_HTTP_PORT |}" \
    config.toml > "$WORK/config.toml"
HTTP_PORT=$(sed -n 's/^port = \([0-9]*\) .*/\1/p' "$WORK/config.toml" | head -1)

if [ -n "${LOPACHE_BIN:-}" ]; then
  BIN=$LOPACHE_BIN
elif [ "${LOPACHE_BUILD:-release}" = debug ]; then
  echo "== cargo build"
  cargo build --bin lopache
  BIN=./target/debug/lopache
else
  echo "== cargo build --release (the first build takes a few minutes)"
  cargo build --release --bin lopache
  BIN=./target/release/lopache
fi
echo "== starting lopache; try: curl -H 'Host: demo.local' http://127.0.0.1:$HTTP_PORT/"
echo "== Ctrl-C stops lopache, the demo backend and the Redis this script started"
"$BIN" --config "$WORK/config.toml" &
LOPACHE=$!
# First in the list: stopped first, so it lets go of Redis before Redis goes.
PIDS=("$LOPACHE" "${PIDS[@]}")
echo "== processes: ${PIDS[*]}"
wait "$LOPACHE"

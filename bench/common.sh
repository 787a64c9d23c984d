# Shared by the bench scripts (sourced, not run): process cleanup, free ports,
# readiness waits. Scripts add PIDs to PIDS and set WORK to a temp dir.
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.2
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -n "${WORK:-}" ] && rm -rf "$WORK"
}
trap cleanup EXIT
# Installs, with apt-get, the Debian package of every missing command; each
# argument is command:package.
install_missing() {
  local missing=() tool sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  for tool in "$@"; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
# Total PSS (KB) of the given pids, and a pid's children.
pss_kb() { local t=0; for p in "$@"; do t=$((t + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup"))); done; echo $t; }
children() { pgrep -P "$1" | tr '\n' ' '; }
# CPU time (user + system, in clock ticks) the given pids used, threads
# included. The fields are counted after the ")" that ends the command name,
# which may hold spaces ("lopache: worker").
cpu_ticks() {
  local t=0 p
  for p in "$@"; do
    t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat")))
  done
  echo $t
}
# CPU µs per request: $1 clock ticks spent on $2 requests.
us_per_request() {
  awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v n="$2" 'BEGIN { printf "%.2f", (n > 0 ? t / hz * 1e6 / n : 0) }'
}
# The requests a wrk report ($1, a file) counts.
wrk_requests() { awk '/requests in/ {print $1}' "$1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "port $1 never opened" >&2
  exit 1
}

# The 5-byte keep-alive nginx backend every HTTP benchmark proxies to, on
# port $1. Sets BACKEND_PID.
start_backend() {
  cat > "$WORK/backend.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/backend.pid; error_log $WORK/backend.err;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$1 reuseport; location / { return 200 "hello"; } } }
CONF
  ${SPAWN:-} nginx -c "$WORK/backend.conf" & PIDS+=($!); BACKEND_PID=$!
  wait_port "$1"
}

# The nginx peer's config: $1 workers proxying port $2 to the backend on
# port $3 with upstream keep-alive; written to $WORK/nginx.conf. It does the
# job lopache does (SPEC "Headers sent upstream"): the client's Host passed
# on, X-Forwarded-For appended, X-Real-IP, X-Forwarded-Proto and
# X-Forwarded-Port set, as an nginx in front of Hipache's backends would be
# configured. Without them nginx sends 80 bytes fewer per request and its
# backend parses four headers fewer than behind lopache.
write_nginx_proxy_conf() {
  cat > "$WORK/nginx.conf" <<CONF
worker_processes $1; daemon off; pid $WORK/nginx.pid; error_log $WORK/nginx.err;
worker_rlimit_nofile 18000;
events { worker_connections 16000; }
http { access_log off; keepalive_requests 1000000;
  upstream b { server 127.0.0.1:$3; keepalive 512; }
  server { listen 127.0.0.1:$2 reuseport;
    location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Port \$server_port; } } }
CONF
}

# A throwaway Redis on port $1 whose frontend $2 points at $3 (host:port).
# Sets REDIS_PID.
start_redis() {
  ${SPAWN:-} redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no --logfile "$WORK/redis.log" & PIDS+=($!); REDIS_PID=$!
  wait_port "$1"
  redis-cli -p "$1" rpush "frontend:$2" "${2%%.*}" "http://$3" >/dev/null
}

# Hosts bench2.local .. bench$2.local in Redis on port $1, all pointing at
# the backend on port $3 (start_redis adds bench.local), and a wrk script
# that asks for the $2 hosts in turn: $WORK/hosts.lua.
seed_hosts() {
  for i in $(seq 2 "$2"); do
    printf 'RPUSH frontend:bench%s.local bench%s http://127.0.0.1:%s\n' "$i" "$i" "$3"
  done | redis-cli -p "$1" >/dev/null
  cat > "$WORK/hosts.lua" <<LUA
local hosts, i = {"bench.local"}, 0
for n = 2, $2 do hosts[n] = "bench" .. n .. ".local" end
request = function()
  i = i % #hosts + 1
  wrk.headers["Host"] = hosts[i]
  return wrk.format()
end
LUA
}

# A 2-shard lopache config reading Redis on port $2, listening on port $3,
# with extra [server] lines $4: $WORK/$1.toml.
write_lopache_conf() {
  cat > "$WORK/$1.toml" <<CONF
driver = "redis://127.0.0.1:$2"
[server]
access_log = "none"
workers = 2
max_connections = 100000
${4:-}
[http]
port = $3
bind = ["127.0.0.1"]
CONF
}

# The options of bench/pairs.sh, bench/h2h.sh and bench/profile.sh: sets ROUNDS, SECS, CONNS
# and HOSTS (the caller sets their defaults) and leaves the rest in ARGS.
# Usage: load_options "USAGE" MIN MAX "$@": with an unknown option, or fewer
# than MIN or more than MAX other arguments, prints "usage: USAGE" and exits.
load_options() {
  local usage=$1 min=$2 max=$3; shift 3
  ARGS=()
  while [ $# -gt 0 ]; do
    case $1 in
      --rounds) ROUNDS=$2; shift 2 ;;
      --seconds) SECS=$2; shift 2 ;;
      --conns) CONNS=$2; shift 2 ;;
      --hosts) HOSTS=$2; shift 2 ;;
      -*) echo "unknown option $1; usage: $usage" >&2; exit 2 ;;
      *) ARGS+=("$1"); shift ;;
    esac
  done
  [ "${#ARGS[@]}" -ge "$min" ] && [ "${#ARGS[@]}" -le "$max" ] || { echo "usage: $usage" >&2; exit 2; }
}

# What they run against, in a new $WORK: a backend (BACKEND), a Redis
# (REDIS) with $HOSTS hosts on it, and their wrk script.
start_hosts_setup() {
  install_missing wrk:wrk nginx:nginx redis-server:redis-server
  WORK=$(mktemp -d)
  BACKEND=$(free_port) REDIS=$(free_port)
  start_backend "$BACKEND"
  start_redis "$REDIS" bench.local "127.0.0.1:$BACKEND"
  seed_hosts "$REDIS" "$HOSTS" "$BACKEND"
}

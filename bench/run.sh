#!/usr/bin/env bash
# lopache benchmark: wrk against the backend directly, lopache, nginx and
# HAProxy in the same run, in alternating order, with repetitions, at 64 and
# 256 connections. lopache runs as two peers: "lopache" with its default
# route cache (tracking: lookups kept until Redis reports a change) and
# "lookup" with route_cache = "off" (a Redis lookup per request, Hipache's
# way). Two modes:
#   free   - everything shares both cores; every proxy runs 2 workers/shards
#   pinned - proxy and Redis on core 0, wrk and the backend on core 1; 1 worker
# Reports req/s, ratios (median of per-repetition ratios), p50/p99, CPU time
# per request of the proxy and of Redis, PSS, and memory per idle keep-alive
# connection. Writes bench/results/latest.{md,csv,svg} (and the head-to-head
# runs to bench/results/h2h.csv).
#
# Usage: bench/run.sh [--reps N] [--seconds S] [--idle N] [--idle-only]
#                     [--route-cache MS] [--hosts N] [--own-sessions]
#                     [--peers pingora,monolake] [--free-only] [--h2h N]
#        (defaults 3, 5, 2000; --idle-only measures idle-connection memory only;
#        --route-cache adds a peer "cached": lopache with server.route_cache_ms;
#        --hosts N spreads requests round-robin over N frontends instead of
#        one, so concurrent lookups rarely share one; a list (--hosts 1,1000)
#        measures each count in the same run, one after the other with the
#        same proxies; a single N > 1 writes to bench/results/hosts-N/ and
#        leaves latest.* alone; --own-sessions
#        starts every server and wrk in its own session, as a service manager
#        would, so the kernel's autogroup scheduling shares the CPU between
#        them as between services; its results go to a sessions/ subfolder;
#        --peers adds Rust proxies with a static route: pingora's quick-start
#        load balancer (bench/peers/pingora, built here) and monolake
#        (cloudwego's monoio proxy, built by bench/peers/monolake/build.sh
#        with the nightly toolchain; skipped without one); --free-only skips
#        the pinned mode; --h2h N sets the head-to-head rounds, 3 by default,
#        0 for none: see below)
#
# Head to head (free mode): lopache and nginx also serve at the same time
# (and lopache and the TTL peer, with --route-cache), each driven by its own
# wrk with the same connection count, for N rounds of two runs (each wrk
# started first once). On this VM one run differs from the next by up to
# 30 %; peers measured in turn carry that noise into their ratio, peers
# measured together share it. The report gives both.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=3 SECS=5 IDLE=2000 IDLE_ONLY=0 CACHE_MS=0 HOSTS_LIST=1 SPAWN="" EXTRA_PEERS="" FREE_ONLY=0 H2H=3
while [ $# -gt 0 ]; do
  case $1 in
    --reps) REPS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --idle) IDLE=$2; shift 2 ;;
    --idle-only) IDLE_ONLY=1; shift ;;
    --route-cache) CACHE_MS=$2; shift 2 ;;
    --hosts) HOSTS_LIST=$2; shift 2 ;;
    # setsid execs in place (a background job is no group leader), so $! stays the server's pid.
    --own-sessions) SPAWN="setsid"; shift ;;
    --peers) EXTRA_PEERS=${2//,/ }; shift 2 ;;
    --free-only) FREE_ONLY=1; shift ;;
    --h2h) H2H=$2; shift 2 ;;
    *) echo "usage: bench/run.sh [--reps N] [--seconds S] [--idle N] [--idle-only] [--route-cache MS] [--hosts N[,N...]] [--own-sessions] [--peers pingora,monolake] [--free-only] [--h2h N]" >&2; exit 2 ;;
  esac
done
HOST_COUNTS=(${HOSTS_LIST//,/ })
for n in "${HOST_COUNTS[@]}"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "--hosts takes positive counts, comma-separated: $HOSTS_LIST" >&2; exit 2; }
done
MAX_HOSTS=$(printf '%s\n' "${HOST_COUNTS[@]}" | sort -n | tail -1)
[[ $H2H =~ ^[0-9]+$ ]] || { echo "--h2h takes a count of rounds: $H2H" >&2; exit 2; }

source bench/common.sh
install_missing wrk:wrk nginx:nginx-light haproxy:haproxy redis-server:redis-server gnuplot:gnuplot-nox python3:python3 taskset:util-linux
cargo build --release --quiet
PINGORA_BIN=bench/peers/pingora/target/release/pingora-peer
MONOLAKE_BIN=bench/peers/monolake/install/bin/monolake
for peer in $EXTRA_PEERS; do
  case $peer in
    pingora)
      install_missing cmake:cmake  # zlib-ng, under pingora's compression
      (cd bench/peers/pingora && cargo build --release --quiet) ;;
    monolake)
      if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        bench/peers/monolake/build.sh
      else
        echo "== monolake needs a nightly toolchain: skipped"; EXTRA_PEERS=${EXTRA_PEERS/monolake/}
      fi ;;
    *) echo "unknown peer $peer (pingora, monolake)" >&2; exit 2 ;;
  esac
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d /tmp/lopache-bench.XXXXXX)
OUT=bench/results
[ ${#HOST_COUNTS[@]} = 1 ] && [ "$MAX_HOSTS" -gt 1 ] && OUT=bench/results/hosts-$MAX_HOSTS
[ -n "$SPAWN" ] && OUT=$OUT/sessions
mkdir -p "$OUT"

BACKEND=$(free_port) REDIS=$(free_port) LOPACHE=$(free_port) NGINX=$(free_port) HAPROXY=$(free_port) CACHED=$(free_port) LOOKUP=$(free_port)
PINGORA=$(free_port) MONOLAKE=$(free_port) PINGORA_PID="" MONOLAKE_PID=""
echo "== backend nginx :$BACKEND, redis :$REDIS, lopache :$LOPACHE, nginx :$NGINX, haproxy :$HAPROXY"

# Backend: nginx answering 5 bytes with keep-alive.
start_backend "$BACKEND"
start_redis "$REDIS" bench.local "127.0.0.1:$BACKEND"

# bench1.local .. benchN.local: same shape as bench.local (3 LRANGE + SMEMBERS).
for i in $(seq 2 "$MAX_HOSTS"); do
  printf 'RPUSH frontend:bench%s.local bench%s http://127.0.0.1:%s\n' "$i" "$i" "$BACKEND"
done | redis-cli -p "$REDIS" >/dev/null
# One wrk script per host count: "$WORK/hosts-N.lua".
for n in "${HOST_COUNTS[@]}"; do
  if [ "$n" -gt 1 ]; then
    cat > "$WORK/hosts-$n.lua" <<LUA
local hosts, i = {"bench.local"}, 0
for n = 2, $n do hosts[n] = "bench" .. n .. ".local" end
request = function()
  i = i % $n + 1
  wrk.headers["Host"] = hosts[i]
  return wrk.format()
end
LUA
  else
    printf 'wrk.headers["Host"] = "bench.local"\n' > "$WORK/hosts-1.lua"
  fi
done
RESULTS="$WORK/results.csv"
echo "mode,hosts,conns,rep,peer,rps,p50_ms,p99_ms,proxy_us,redis_us,errors,pss_kb" > "$RESULTS"

to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) print v/1000; else if (v ~ /ms$/) print v+0; else if (v ~ /s$/) print v*1000; else print v }'; }

start_proxies() { # $1 = workers, $2 = cpu list for proxies
  local n=$1 cpus=$2
  cat > "$WORK/lopache.toml" <<CONF
driver = "redis://127.0.0.1:$REDIS"
[server]
access_log = "none"  # the peers log nothing either
workers = $n
max_connections = 100000
[http]
port = $LOPACHE
bind = ["127.0.0.1"]
CONF
  $SPAWN taskset -c "$cpus" ./target/release/lopache --config "$WORK/lopache.toml" 2>"$WORK/lopache.log" & PIDS+=($!); LOPACHE_PID=$!
  sed -e "s/^port = $LOPACHE/port = $LOOKUP/" -e "s/^\[server\]/[server]\nroute_cache = \"off\"/" \
    "$WORK/lopache.toml" > "$WORK/lookup.toml"
  $SPAWN taskset -c "$cpus" ./target/release/lopache --config "$WORK/lookup.toml" 2>"$WORK/lookup.log" & PIDS+=($!); LOOKUP_PID=$!
  CACHED_PID=""
  if [ "$CACHE_MS" -gt 0 ]; then
    sed -e "s/^port = $LOPACHE/port = $CACHED/" -e "s/^\[server\]/[server]\nroute_cache_ms = $CACHE_MS/" \
      "$WORK/lopache.toml" > "$WORK/cached.toml"
    $SPAWN taskset -c "$cpus" ./target/release/lopache --config "$WORK/cached.toml" 2>"$WORK/cached.log" & PIDS+=($!); CACHED_PID=$!
  fi
  write_nginx_proxy_conf "$n" "$NGINX" "$BACKEND"
  $SPAWN taskset -c "$cpus" nginx -c "$WORK/nginx.conf" & PIDS+=($!); NGINX_PID=$!
  cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread $n
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend f
  bind 127.0.0.1:$HAPROXY
  # The job lopache does (bench/common.sh, write_nginx_proxy_conf).
  option forwardfor
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Port %[dst_port]
  default_backend b
backend b
  server s1 127.0.0.1:$BACKEND maxconn 10000
CONF
  $SPAWN taskset -c "$cpus" haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 & PIDS+=($!); HAPROXY_PID=$!
  for peer in $EXTRA_PEERS; do
    case $peer in
      pingora)
        $SPAWN taskset -c "$cpus" "$PINGORA_BIN" "127.0.0.1:$PINGORA" "127.0.0.1:$BACKEND" "$n" >"$WORK/pingora.log" 2>&1 & PIDS+=($!); PINGORA_PID=$!
        wait_port "$PINGORA" ;;
      monolake)
        cat > "$WORK/monolake.toml" <<CONF
[runtime]
worker_threads = $n
entries = 8192

[servers.bench]
name = "bench.local"
listener = { type = "socket", value = "127.0.0.1:$MONOLAKE" }

[[servers.bench.routes]]
path = '/'
upstreams = [{ endpoint = { type = "uri", value = "http://127.0.0.1:$BACKEND" } }]
CONF
        $SPAWN taskset -c "$cpus" "$MONOLAKE_BIN" --config "$WORK/monolake.toml" >"$WORK/monolake.log" 2>&1 & PIDS+=($!); MONOLAKE_PID=$!
        wait_port "$MONOLAKE" ;;
    esac
  done
  wait_port "$LOPACHE"; wait_port "$LOOKUP"; wait_port "$NGINX"; wait_port "$HAPROXY"
  [ -z "$CACHED_PID" ] || wait_port "$CACHED"
  sleep 0.3
}

stop_proxies() {
  kill $LOPACHE_PID $LOOKUP_PID $CACHED_PID "$NGINX_PID" "$HAPROXY_PID" $MONOLAKE_PID 2>/dev/null || true
  # pingora drains for a minute on SIGTERM and SIGINT alike: a bench peer need not.
  [ -z "$PINGORA_PID" ] || kill -KILL "$PINGORA_PID" 2>/dev/null || true
  wait $LOPACHE_PID $LOOKUP_PID $CACHED_PID "$NGINX_PID" "$HAPROXY_PID" $PINGORA_PID $MONOLAKE_PID 2>/dev/null || true
}

# Processes whose CPU and memory count as "the proxy".
proxy_pids() {
  case $1 in
    direct) echo "" ;;
    lopache) echo "$LOPACHE_PID $(children "$LOPACHE_PID")" ;;
    lookup) echo "$LOOKUP_PID $(children "$LOOKUP_PID")" ;;
    cached) echo "$CACHED_PID $(children "$CACHED_PID")" ;;
    nginx) echo "$NGINX_PID $(children "$NGINX_PID")" ;;
    haproxy) echo "$HAPROXY_PID" ;;
    pingora) echo "$PINGORA_PID" ;;
    monolake) echo "$MONOLAKE_PID" ;;
  esac
}
port_of() { case $1 in direct) echo "$BACKEND" ;; lopache) echo "$LOPACHE" ;; lookup) echo "$LOOKUP" ;; cached) echo "$CACHED" ;; nginx) echo "$NGINX" ;; haproxy) echo "$HAPROXY" ;; pingora) echo "$PINGORA" ;; monolake) echo "$MONOLAKE" ;; esac; }

# Non-2xx answers and socket errors in a wrk report.
wrk_errors() { awk '/Non-2xx/ {n += $4} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$1"; }

run_one() { # mode hosts conns rep peer wrk_cpus
  local mode=$1 hosts=$2 conns=$3 rep=$4 peer=$5 wcpus=$6
  local pids; pids=$(proxy_pids "$peer")
  local p0 r0 out
  p0=$(cpu_ticks $pids); r0=$(cpu_ticks "$REDIS_PID")
  out=$($SPAWN taskset -c "$wcpus" wrk -t1 -c"$conns" -d"${SECS}s" --latency -s "$WORK/hosts-$hosts.lua" "http://127.0.0.1:$(port_of "$peer")/")
  local p1 r1; p1=$(cpu_ticks $pids); r1=$(cpu_ticks "$REDIS_PID")
  local reqs rps p50 p99 errs pss
  reqs=$(wrk_requests <(echo "$out"))
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")
  p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
  errs=$(wrk_errors <(echo "$out"))
  pss=0; [ -n "$pids" ] && pss=$(pss_kb $pids)
  local proxy_us redis_us
  proxy_us=$(us_per_request $((p1 - p0)) "$reqs")
  redis_us=$(us_per_request $((r1 - r0)) "$reqs")
  case $peer in lopache|lookup|cached) ;; *) redis_us=0 ;; esac
  echo "$mode,$hosts,$conns,$rep,$peer,$rps,$p50,$p99,$proxy_us,$redis_us,$errs,$pss" >> "$RESULTS"
  printf '  %-8s %4s hosts %4s conns rep %s: %9s req/s  p99 %6s ms  proxy %6s us/req  redis %5s us/req  errors %s\n' \
    "$peer" "$hosts" "$conns" "$rep" "$rps" "$p99" "$proxy_us" "$redis_us" "$errs"
}

# Peers A and B at once, each with its own wrk; appends to $H2H_CSV their
# req/s, wrk errors and CPU µs per request (each proxy's CPU time over the
# requests its wrk counted).
H2H_CSV="$WORK/h2h.csv"; echo "hosts,conns,round,first,a,b,a_rps,b_rps,a_errors,b_errors,a_cpu_us,b_cpu_us" > "$H2H_CSV"
h2h_load() { # peer hosts conns wrk_cpus: wrk's report in $WORK/h2h-<peer>.out
  $SPAWN taskset -c "$4" wrk -t1 -c"$3" -d"${SECS}s" -s "$WORK/hosts-$2.lua" "http://127.0.0.1:$(port_of "$1")/" > "$WORK/h2h-$1.out"
}
run_h2h() { # a b hosts conns round wrk_cpus
  local a=$1 b=$2 hosts=$3 conns=$4 round=$5 wcpus=$6 first second pid ra rb ta tb ua ub
  local pa pb; pa=$(proxy_pids "$a"); pb=$(proxy_pids "$b")
  for first in "$a" "$b"; do
    second=$([ "$first" = "$a" ] && echo "$b" || echo "$a")
    ta=$(cpu_ticks $pa); tb=$(cpu_ticks $pb)
    h2h_load "$first" "$hosts" "$conns" "$wcpus" & pid=$!; PIDS+=("$pid")
    h2h_load "$second" "$hosts" "$conns" "$wcpus"; wait "$pid"
    ua=$(us_per_request $(($(cpu_ticks $pa) - ta)) "$(wrk_requests "$WORK/h2h-$a.out")")
    ub=$(us_per_request $(($(cpu_ticks $pb) - tb)) "$(wrk_requests "$WORK/h2h-$b.out")")
    ra=$(awk '/Requests\/sec/ {print $2}' "$WORK/h2h-$a.out"); rb=$(awk '/Requests\/sec/ {print $2}' "$WORK/h2h-$b.out")
    echo "$hosts,$conns,$round,$first,$a,$b,$ra,$rb,$(wrk_errors "$WORK/h2h-$a.out"),$(wrk_errors "$WORK/h2h-$b.out"),$ua,$ub" >> "$H2H_CSV"
    printf '  head to head %4s hosts %4s conns round %s, %-7s first: %s %9s req/s %6s us/req  %s %9s req/s %6s us/req\n' \
      "$hosts" "$conns" "$round" "$first" "$a" "$ra" "$ua" "$b" "$rb" "$ub"
  done
}
# lopache against nginx; with a TTL peer, also against it (the route cache's target).
H2H_PAIRS=("lopache nginx"); [ "$CACHE_MS" -gt 0 ] && H2H_PAIRS+=("lopache cached")

PEERS=(direct lopache lookup nginx haproxy); [ "$CACHE_MS" -gt 0 ] && PEERS+=(cached)
for peer in $EXTRA_PEERS; do PEERS+=("$peer"); done
MODES=(free pinned); [ "$FREE_ONLY" = 1 ] && MODES=(free); [ "$IDLE_ONLY" = 1 ] && MODES=()
for mode in "${MODES[@]}"; do
  if [ "$mode" = free ]; then
    workers=2; pcpus=0,1; wcpus=0,1
    taskset -a -p -c 0,1 "$REDIS_PID" >/dev/null; taskset -a -p -c 0,1 "$BACKEND_PID" >/dev/null
    for c in $(children "$BACKEND_PID"); do taskset -a -p -c 0,1 "$c" >/dev/null; done
  else
    workers=1; pcpus=0; wcpus=1
    taskset -a -p -c 0 "$REDIS_PID" >/dev/null; taskset -a -p -c 1 "$BACKEND_PID" >/dev/null
    for c in $(children "$BACKEND_PID"); do taskset -a -p -c 1 "$c" >/dev/null; done
  fi
  echo "== mode $mode ($workers worker(s))"
  start_proxies "$workers" "$pcpus"
  for hosts in "${HOST_COUNTS[@]}"; do
    # Warm up pools, Redis connections and route caches.
    for peer in "${PEERS[@]}"; do $SPAWN taskset -c "$wcpus" wrk -t1 -c64 -d1s -s "$WORK/hosts-$hosts.lua" "http://127.0.0.1:$(port_of "$peer")/" >/dev/null; done
    for conns in 64 256; do
      for rep in $(seq "$REPS"); do
        # Rotate the order each repetition so no peer always runs first.
        for i in "${!PEERS[@]}"; do
          peer=${PEERS[$(( (i + rep) % ${#PEERS[@]} ))]}
          run_one "$mode" "$hosts" "$conns" "$rep" "$peer" "$wcpus"
        done
      done
      if [ "$mode" = free ]; then
        for pair in "${H2H_PAIRS[@]}"; do
          for round in $(seq "$H2H"); do run_h2h $pair "$hosts" "$conns" "$round" "$wcpus"; done
        done
      fi
    done
  done
  stop_proxies
done

# Memory per idle keep-alive connection: open IDLE connections, one request
# each, hold them, compare the proxy's PSS with its PSS before.
echo "== idle keep-alive memory ($IDLE connections)"
taskset -a -p -c 0,1 "$REDIS_PID" >/dev/null
start_proxies 1 0,1
IDLE_CSV="$WORK/idle.csv"; echo "peer,kb_per_conn" > "$IDLE_CSV"
for peer in lopache nginx haproxy; do
  pids=$(proxy_pids "$peer")
  python3 - "$(port_of "$peer")" "$IDLE" "$WORK/hold-$peer" <<'PY' &
import socket, sys, time, os
port, n, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n")
    conns.append(s)
for s in conns:
    got = b""
    while not got.endswith(b"hello"):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("closed")
        got += chunk
open(flag, "w").close()
while os.path.exists(flag):
    time.sleep(0.05)
PY
  holder=$!
  # Baseline after a warm-up request on a connection that closes again.
  curl -s -H 'Host: bench.local' "http://127.0.0.1:$(port_of "$peer")/" >/dev/null || true
  before=$(pss_kb $pids)
  for _ in $(seq 600); do [ -e "$WORK/hold-$peer" ] && break; sleep 0.1; done
  sleep 1.5  # settle: allocators hand back what the burst freed
  after=$(pss_kb $pids)
  rm -f "$WORK/hold-$peer"; wait "$holder" || true
  per=$(awk -v a="$after" -v b="$before" -v n="$IDLE" 'BEGIN { printf "%.2f", (a - b) / n }')
  echo "$peer,$per" >> "$IDLE_CSV"
  printf '  %-7s %s KB per idle connection (PSS %s -> %s KB)\n' "$peer" "$per" "$before" "$after"
done
stop_proxies
[ "$IDLE_ONLY" = 1 ] && exit 0

STAMP="$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r), $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')"
COMMAND="bench/run.sh --reps $REPS --seconds $SECS --idle $IDLE"
[ "$CACHE_MS" -gt 0 ] && COMMAND="$COMMAND --route-cache $CACHE_MS"
[ "$HOSTS_LIST" != 1 ] && COMMAND="$COMMAND --hosts $HOSTS_LIST"
[ -n "$SPAWN" ] && COMMAND="$COMMAND --own-sessions"
[ "$FREE_ONLY" = 1 ] && COMMAND="$COMMAND --free-only"
[ -n "${EXTRA_PEERS// /}" ] && COMMAND="$COMMAND --peers $(echo $EXTRA_PEERS | tr ' ' ',')"
[ "$H2H" != 3 ] && COMMAND="$COMMAND --h2h $H2H"
# Kept first: a report that fails must not cost the run.
cp "$RESULTS" "$OUT/latest.csv"; cp "$IDLE_CSV" "$OUT/idle.csv"; cp "$H2H_CSV" "$OUT/h2h.csv"
python3 bench/report.py "$RESULTS" "$IDLE_CSV" "$STAMP" "$COMMAND" "$OUT" "$H2H_CSV"
gnuplot "$OUT/chart.gp"
echo "== wrote $OUT/latest.md, latest.csv, latest.svg"

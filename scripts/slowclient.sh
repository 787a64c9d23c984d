#!/usr/bin/env bash
# The slow-client suite: slowhttptest runs its three slow attacks against a
# real lopache (slowloris: heads trickled one header at a time; slow body:
# bodies trickled after a large Content-Length; slow read: responses read a
# few bytes at a time through a tiny TCP window), 1000 connections each,
# while a probe asks for a page every half second from a well-behaved
# client. It prints, per attack, how many probes were answered and what
# slowhttptest concluded, and exits 1 if service was not available
# throughout (a probe unanswered within 3 s, or a non-200 answer).
#
#   scripts/slowclient.sh [SECONDS]     each attack's length (default 30)
#
#   ATTACKS="slowread"   run only some attacks; CONNECTIONS=N (default 1000);
#   KEEP=1               keep the work directory (slowhttptest's CSV and HTML)
#
# Installs slowhttptest and redis-server when missing. Uses the debug
# binary (built here if needed); LOPACHE_BIN=path runs another one.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
connections=${CONNECTIONS:-1000}

need_apt=()
command -v slowhttptest >/dev/null || need_apt+=(slowhttptest)
command -v redis-server >/dev/null || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
bin=${LOPACHE_BIN:-target/debug/lopache}
if [ -z "${LOPACHE_BIN:-}" ]; then
  cargo build --quiet
fi
# Every attacking connection is a descriptor on both sides.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# Redis on a unix socket (no port to collide with), a Python backend on a
# port the kernel picks, lopache on another.
redis-server --port 0 --unixsocket "$work/redis.sock" --save '' --appendonly no \
  --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
python3 - "$work/backend.port" >"$work/backend.log" 2>&1 <<'EOF' &
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"x" * (256 * 1024 if self.path.startswith("/big") else 2)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        self.do_GET()
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 1024
s = S(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
s.serve_forever()
EOF
pids+=($!)
for _ in $(seq 100); do [ -S "$work/redis.sock" ] && [ -s "$work/backend.port" ] && break; sleep 0.1; done
backend_port=$(cat "$work/backend.port")
redis-cli -s "$work/redis.sock" RPUSH frontend:127.0.0.1 slow "http://127.0.0.1:$backend_port" >/dev/null

cat >"$work/config.toml" <<EOF
driver = "redis+unix://$work/redis.sock"
[server]
access_log = "none"
[http]
port = 0
bind = ["127.0.0.1"]
EOF
"$bin" --config "$work/config.toml" 2>"$work/lopache.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$work/lopache.log" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/lopache.log" | head -1)
[ -n "$port" ] || { cat "$work/lopache.log" >&2; exit 1; }
url="http://127.0.0.1:$port"
echo "lopache on $url, backend on 127.0.0.1:$backend_port; $connections connections, ${seconds}s per attack"

# A well-behaved client: one GET every 0.5 s, each allowed 3 s.
probe() {
  local out=$1 deadline=$(( $(date +%s) + $2 ))
  : >"$out"
  while [ "$(date +%s)" -lt "$deadline" ]; do
    code=$(curl -s -o /dev/null -m 3 -w '%{http_code}' "$url/" || true)
    echo "$code" >>"$out"
    sleep 0.5
  done
}

failed=0
run_attack() {
  local name=$1; shift
  probe "$work/probe-$name" "$seconds" &
  local probe_pid=$!
  slowhttptest "$@" -c "$connections" -r 500 -l "$seconds" -p 3 -g -o "$work/$name" \
    >"$work/$name.out" 2>&1 || true
  wait "$probe_pid"
  local total ok verdict
  total=$(wc -l <"$work/probe-$name")
  ok=$(grep -c '^200$' "$work/probe-$name" || true)
  # slowhttptest's own probe: the last "service available" column of its CSV.
  verdict=$(tail -1 "$work/$name.csv" 2>/dev/null | awk -F, '{print ($NF > 0) ? "available" : "NOT available"}')
  local connected
  connected=$(tail -1 "$work/$name.csv" 2>/dev/null | awk -F, '{print $4}')
  printf '%-10s probes %3d/%-3d answered 200; slowhttptest: %s (%s attacking connections open at the end)\n' \
    "$name" "$ok" "$total" "${verdict:-?}" "${connected:-?}"
  if [ "$ok" -ne "$total" ] || [ "$total" -eq 0 ] || [ "$verdict" != available ]; then
    failed=1
    grep -v '^200$' "$work/probe-$name" | sort | uniq -c | sed 's/^/    probe status /' >&2 || true
  fi
}

attacks=${ATTACKS:-slowloris slowbody slowread}
for attack in $attacks; do
  case $attack in
    slowloris) run_attack slowloris -H -i 5 -x 24 -u "$url/" ;;
    slowbody) run_attack slowbody -B -i 5 -s 100000 -x 24 -u "$url/" ;;
    slowread) run_attack slowread -X -w 512 -y 1024 -n 5 -z 32 -k 3 -u "$url/big" ;;
    *) echo "unknown attack $attack" >&2; exit 2 ;;
  esac
done

if ! kill -0 "${pids[2]}" 2>/dev/null; then
  echo "lopache exited during the attacks" >&2
  failed=1
fi
if [ "$failed" -ne 0 ]; then
  echo "slow clients: service NOT available throughout" >&2
  tail -5 "$work/lopache.log" >&2
  exit 1
fi
echo "slow clients: service available throughout"

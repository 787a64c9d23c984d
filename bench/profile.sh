#!/usr/bin/env bash
# Usage: bench/profile.sh [--seconds S] [--conns C] [--hosts N] [BINARY]
#
# Where a proxied request's CPU goes, lopache (tracking, the default; BINARY
# defaults to target/release/lopache, a relative path is from the
# repository's root) against nginx: each serves alone under the same wrk
# load (C connections over N hosts, 256 and 1000 by default) while `perf
# record` samples its workers every 250 µs of their CPU for one S-second wrk
# run (6 by default), then `perf stat` counts their system calls during
# another. Prints, per request: CPU µs in the kernel and in user space,
# system calls, TCP segments sent (the machine's, so wrk's and the
# backend's too), and the symbols with the most ns per request side by
# side. The two proxies are measured in turn, so their totals drift with
# the VM as their req/s do (by 10 % from one run to the next here): this
# shows where the time goes; bench/h2h.sh says which proxy is faster.
# Needs perf, and root or a low kernel.perf_event_paranoid. Profiles
# are left in bench/results/tmp/profile.{lopache,nginx}.data for
# `perf report -i`.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
SECS=6 CONNS=256 HOSTS=1000
load_options "bench/profile.sh [--seconds S] [--conns C] [--hosts N] [BINARY]" 0 1 "$@"
set -- "${ARGS[@]}"
BIN=${1:-target/release/lopache}
[ -x "$BIN" ] || { echo "$BIN: no such binary (cargo build --release)" >&2; exit 2; }
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 2; }
start_hosts_setup
OUTDIR=bench/results/tmp; mkdir -p "$OUTDIR"

port=$(free_port)
write_lopache_conf lopache "$REDIS" "$port"
"$BIN" --config "$WORK/lopache.toml" 2>"$WORK/lopache.log" & PIDS+=($!); LOPACHE_PID=$!
nport=$(free_port)
write_nginx_proxy_conf 2 "$nport" "$BACKEND"
nginx -c "$WORK/nginx.conf" & PIDS+=($!); NGINX_PID=$!
wait_port "$port"; wait_port "$nport"

# The serving processes: the master's children (workers), comma-separated.
workers() { pgrep -P "$1" | paste -sd, || true; }
out_segs() { awk '/^Tcp:/ && ++n == 2 { print $12 }' /proc/net/snmp; }
wrk_args() { echo -t1 -c"$CONNS" -d"$2" -s "$WORK/hosts.lua" "http://127.0.0.1:$1/"; }

for peer in lopache nginx; do
  p=$([ $peer = lopache ] && echo "$port" || echo "$nport")
  # Warms up pools and the route cache; once it is served, workers are up.
  wrk $(wrk_args "$p" 1s) >/dev/null
  pids=$(workers "$([ $peer = lopache ] && echo "$LOPACHE_PID" || echo "$NGINX_PID")")
  [ -n "$pids" ] || { echo "$peer: no worker processes found" >&2; exit 1; }
  # perf watches the workers while one wrk runs, so each figure is per
  # request that this wrk counted. cpu-clock with a fixed period: every
  # sample is 250 µs of a worker's CPU.
  s0=$(out_segs)
  perf record -q -e cpu-clock -c 250000 -p "$pids" -o "$OUTDIR/profile.$peer.data" \
    -- wrk $(wrk_args "$p" "${SECS}s") > "$WORK/$peer.record.wrk"
  s1=$(out_segs)
  perf stat -x, -e raw_syscalls:sys_enter -p "$pids" -o "$WORK/$peer.stat" \
    -- wrk $(wrk_args "$p" "${SECS}s") > "$WORK/$peer.stat.wrk"
  calls=$(awk -F, '/sys_enter/ && $1 ~ /^[0-9]+$/ { print $1 }' "$WORK/$peer.stat")
  echo "$peer $(wrk_requests "$WORK/$peer.record.wrk") $((s1 - s0)) $(wrk_requests "$WORK/$peer.stat.wrk") ${calls:-0}" >> "$WORK/counts"
done

python3 - "$WORK/counts" "$OUTDIR" "$SECS" <<'PY'
import re, subprocess, sys
counts, outdir, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
rows, peers = {}, []
for line in open(counts):
    peer, reqs, segs, stat_reqs, calls = line.split()
    reqs, stat_reqs, calls = int(reqs), int(stat_reqs), int(calls)
    report = subprocess.run(
        ["perf", "report", "-i", f"{outdir}/profile.{peer}.data", "--no-children",
         "--sort", "dso,sym", "--stdio", "-g", "none", "-n"],
        capture_output=True, text=True, check=True).stdout
    # Every sample is 250 µs of CPU (cpu-clock, -c 250000).
    ns_per_sample = 250_000 / reqs
    kernel = user = 0.0
    for m in re.finditer(r"^\s+[\d.]+%\s+(\d+)\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$", report, re.M):
        samples, dso, space, sym = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        ns = samples * ns_per_sample
        if space == "k":
            kernel += ns
        else:
            user += ns
        cell = rows.setdefault((dso, sym), {})
        cell[peer] = cell.get(peer, 0) + ns
    peers.append(peer)
    per_req = f"{calls / stat_reqs:.2f}" if calls and stat_reqs else "?"
    print(f"{peer:8} {reqs / secs:9,.0f} req/s  {(kernel + user) / 1000:5.2f} µs/req "
          f"(kernel {kernel / 1000:.2f}, user {user / 1000:.2f})  "
          f"syscalls {per_req}/req  TCP segments {int(segs) / reqs:.2f}/req")
print(f"\nns per request   {'  '.join(f'{p:>8}' for p in peers)}")
for dso, sym in sorted(rows, key=lambda k: -sum(rows[k].values()))[:40]:
    cells = "  ".join(f"{rows[(dso, sym)].get(p, 0):8.0f}" for p in peers)
    print(f"                 {cells}  {sym[:70]} ({dso})")
PY

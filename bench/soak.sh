#!/usr/bin/env bash
# Soak test under PaaS churn: MINUTES of mixed load while backends come and go,
# routes are rewritten, the config is reloaded every minute and Redis restarts
# once; samples the workers' RSS, descriptors, CLOSE-WAIT sockets and pool
# sizes every 10 s into bench/results/soak/soak.{csv,svg} and fails unless
# they return to their level before the load (see bench/soak.py for the
# scenario and the pass rule).
# Usage: bench/soak.sh MINUTES [--reload-every S] [--workers N] [--tunnels N]
#                              [--delay-ms MS] [--binary PATH] [--out DIR] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/soak.sh MINUTES [options] (bench/soak.py --help)" >&2; exit 2; }
source bench/common.sh
install_missing wrk:wrk nginx:nginx-light redis-server:redis-server gnuplot:gnuplot-nox python3:python3 ss:iproute2 curl:curl pgrep:procps
cargo build --release --quiet
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 bench/soak.py "$@"

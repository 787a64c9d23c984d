#!/usr/bin/env bash
# Route churn under load: how fresh are the routes lopache serves while one
# is rewritten every 10 ms on the Redis master? Stale answers and the time
# from a write to the first request served it, per route cache mode, while
# wrk loads another host (see bench/churn.py for the method).
# Usage: bench/churn.sh [--seconds S] [--every-ms MS] [--modes lookup,tracking,cached]
#                       [--replica] [--probers N] [--connections N]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
install_missing wrk:wrk nginx:nginx-light redis-server:redis-server python3:python3
cargo build --release --quiet
exec python3 bench/churn.py "$@"

#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets, bodies in src/fuzzing) with
# cargo-fuzz on the nightly toolchain, SECONDS each (default 60), and prints
# one line per target: executions, corpus size, and whether it crashed.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
#   JOBS=2        targets run at once (default 1)
#   MERGE=1       afterwards, minimise what was found into fuzz/corpus/<target>
#                 (the committed corpus that tests/fuzz_corpus.rs replays)
#
# New inputs go to fuzz/corpus-work/<target> (not committed); a crash is
# saved under fuzz/artifacts/<target>/ and should become a file in
# fuzz/regressions/<target>/ once fixed. Without a nightly toolchain the
# script says so and exits 0: the crate itself builds and tests on stable.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^lopache-fuzz$')
fi

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: no nightly toolchain, skipped (the corpora are replayed by cargo test)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install --quiet --locked cargo-fuzz
fi

echo "== building ${#targets[@]} fuzz targets"
cargo +nightly fuzz build 2>&1 | tail -1

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
run_one() {
  local t=$1
  mkdir -p "fuzz/corpus-work/$t" "fuzz/corpus/$t" "fuzz/artifacts/$t"
  # The first directory receives new inputs; the committed one seeds.
  cargo +nightly fuzz run "$t" "fuzz/corpus-work/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" >"$logs/$t.log" 2>&1
}

failed=0
jobs=${JOBS:-1}
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

printf '%-18s %12s %8s  %s\n' target execs corpus result
for t in "${targets[@]}"; do
  log="$logs/$t.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  corpus=$(find "fuzz/corpus-work/$t" "fuzz/corpus/$t" -type f | wc -l)
  if grep -qE '^==[0-9]+==ERROR|^SUMMARY|panicked at|Test unit written' "$log"; then
    result="CRASH (fuzz/artifacts/$t/)"
    failed=1
    grep -m3 -E 'panicked at|ERROR|Test unit written' "$log" | sed 's/^/    /' >&2
  else
    result="clean"
  fi
  printf '%-18s %12s %8s  %s\n' "$t" "${execs:-?}" "$corpus" "$result"
  if [ "${MERGE:-0}" = 1 ] && [ "$result" = clean ]; then
    # Seeds and finds together, minimised to the inputs that add coverage.
    cp -n "fuzz/corpus-work/$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
    cargo +nightly fuzz cmin "$t" "fuzz/corpus/$t" >/dev/null 2>&1 || true
  fi
done
exit "$failed"

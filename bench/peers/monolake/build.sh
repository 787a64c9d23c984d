#!/usr/bin/env bash
# Builds monolake 0.3.0 (cloudwego's monoio proxy, a benchmark peer for
# bench/run.sh --peers monolake) with the nightly toolchain into
# bench/peers/monolake/install/bin/monolake. monolake-services 0.3.2 has one
# let-chain, which nightlies refuse outside edition 2024: when the plain
# `cargo install` fails on it, the two crates are copied from the registry,
# that `if` is rewritten as two nested ones, and monolake is built against
# the patched copy.
set -euo pipefail
cd "$(dirname "$0")"
BIN=install/bin/monolake
[ -x "$BIN" ] && exit 0
if cargo +nightly install --quiet monolake --version 0.3.0 --root install 2>install.log; then
  exit 0
fi
grep -q "let chains are only allowed" install.log || { cat install.log >&2; exit 1; }
registry=$(dirname "$(find "$HOME/.cargo/registry/src" -maxdepth 2 -name 'monolake-0.3.0' | head -1)")
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -r "$registry/monolake-0.3.0" "$registry/monolake-services-0.3.2" "$src/"
python3 - "$src/monolake-services-0.3.2/src/http/util.rs" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
chain = """        if this.accompany_slot.is_none()
            && let Poll::Ready(t) = this.accompany.poll(cx)
        {
            *this.accompany_slot = Some(t);
        }"""
nested = """        if this.accompany_slot.is_none() {
            if let Poll::Ready(t) = this.accompany.poll(cx) {
                *this.accompany_slot = Some(t);
            }
        }"""
assert chain in text, "the let-chain moved: update bench/peers/monolake/build.sh"
open(path, "w").write(text.replace(chain, nested))
PY
printf '\n[patch.crates-io]\nmonolake-services = { path = "../monolake-services-0.3.2" }\n' >> "$src/monolake-0.3.0/Cargo.toml"
(cd "$src/monolake-0.3.0" && cargo +nightly build --release --quiet)
mkdir -p install/bin
cp "$src/monolake-0.3.0/target/release/monolake" "$BIN"

#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, then runs the whole
# suite: formatting, lints, unit and integration tests on the io_uring driver,
# and the integration tests again on the epoll driver.
set -euo pipefail
shopt -s lastpipe
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
# The TLS tests convert keys to PKCS#1 and SEC1 the way operators do.
command -v openssl >/dev/null || need_apt+=(openssl)
# The differential test (tests/differential.rs) runs three real backends.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v node >/dev/null || need_apt+=(nodejs)
# The PROXY protocol tests use HAProxy as the sender.
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
# The syslog access log is checked against rsyslogd (run by the test, with its own config).
command -v rsyslogd >/dev/null || [ -x /usr/sbin/rsyslogd ] || need_apt+=(rsyslog)
python3 -c 'import h11' 2>/dev/null || /usr/bin/python3 -c 'import h11' 2>/dev/null || need_apt+=(python3-h11)
# The fd-shortage tests run lopache under prlimit; the resolver tests in a
# private mount namespace (unshare -m, mount --bind of resolv.conf).
command -v prlimit >/dev/null && command -v unshare >/dev/null || need_apt+=(util-linux)
command -v mount >/dev/null || need_apt+=(mount)
# scripts/run.sh is run and asked for its demo page.
command -v curl >/dev/null || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "cargo is required (install Rust with rustup)" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if command -v systemd-analyze >/dev/null; then
  # The unit as shipped, pointed at this build and config: any complaint
  # (an unknown key, a bad value) fails, though systemd-analyze exits 0.
  echo "== systemd-analyze verify scripts/lopache.service"
  cargo build --quiet --bin lopache
  unit_dir=$(mktemp -d)
  sed "s|/usr/local/bin/lopache|$PWD/target/debug/lopache|g; s|/etc/lopache/config.toml|$PWD/config.toml|g" \
    scripts/lopache.service > "$unit_dir/lopache.service"
  complaints=$(systemd-analyze verify "$unit_dir/lopache.service" 2>&1 || echo "systemd-analyze failed")
  rm -rf "$unit_dir"
  if [ -n "$complaints" ]; then echo "$complaints"; exit 1; fi
fi
echo "== tests (io_uring driver where available)"
cargo test --quiet 2>&1 | tee -a "$log"
echo "== integration tests on the epoll driver (MONOIO_FORCE_LEGACY_DRIVER=1)"
MONOIO_FORCE_LEGACY_DRIVER=1 cargo test --quiet --tests 2>&1 | tee -a "$log"
# scripts/run.sh serves its demo page, and Ctrl-C leaves nothing running.
# Arguments: a command prefix to run it with (e.g. as another user).
check_run_sh() {
  local run_log http_port run_pid served started left p
  run_log=$(mktemp)
  chmod 666 "$run_log"
  http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # A background job of a script starts with SIGINT ignored; a terminal's
  # Ctrl-C reaches run.sh with it at its default, as env restores it here.
  "$@" env --default-signal=INT LOPACHE_BIN="$PWD/target/debug/lopache" \
    LOPACHE_HTTP_PORT="$http_port" scripts/run.sh >"$run_log" 2>&1 &
  run_pid=$!
  served=""
  for _ in $(seq 600); do
    served=$(curl -s -m 2 -H 'Host: demo.local' "http://127.0.0.1:$http_port/" 2>/dev/null || true)
    [ -n "$served" ] && break
    sleep 0.1
  done
  started=$(sed -n 's/^== processes: //p' "$run_log")
  # The prefix execs (setpriv, env), so the job's pid is the script's.
  kill -INT "$run_pid"
  wait "$run_pid" || true
  left=""
  for p in $started; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
  if ! grep -q "Hello from the lopache demo backend" <<<"$served" || [ -z "$started" ] || [ -n "$left" ]; then
    echo "scripts/run.sh ($*): demo answered [$served], left running:[$left]"; cat "$run_log"; exit 1
  fi
  rm -f "$run_log"
}
echo "== scripts/run.sh: serves the demo, and Ctrl-C leaves nothing running"
cargo build --quiet --bin lopache
check_run_sh
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
  echo "== scripts/run.sh as nobody"
  check_run_sh setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups env HOME=/tmp
fi
echo "demo served; nothing left running"
# One closing line over both runs.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"

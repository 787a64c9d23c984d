#!/usr/bin/env python3
"""Soak lopache under PaaS churn (run by bench/soak.sh, which installs the tools).

For MINUTES, while four wrk instances keep a mixed load (keep-alive clients,
`Connection: close` clients, routed hosts whose backends churn, unknown hosts)
and a few WebSocket tunnels echo a message a second:

- every --churn-every seconds a new backend starts on a fresh port (every other
  one named `localhost`, so the DNS cache churns too), one of the churn hosts'
  route is rewritten in Redis to point at it, and that host's previous backend
  stops (its open connections cut); churn backends close idle connections
  after 2 s and answer 1 request in 20 with `Connection: close`;
- a SIGHUP reload every --reload-every seconds (0 = none);
- Redis is killed and restarted once, half-way, and the routes seeded again.

Every 10 s it samples lopache's workers (RSS, file descriptors, CLOSE-WAIT
sockets) and /metrics (idle upstream connections, per-shard map sizes) into
a CSV and draws it as an SVG with gnuplot.

It fails unless (a) after the load stops and one upstream idle timeout (plus
the sweep and the drain of the last reload) passes, the workers' descriptors
and RSS are within 10 % of their level before the load, and (b) no error was
seen other than those the scenario provokes: a stable host answers 200 (and
`Connection: close` clients too), an unknown host 400, a churn host 200, 404
(its /missing path), 502 or 503 (its backend just stopped); any 5xx while
Redis is down (plus a grace period) is expected; wrk may see no socket errors
or timeouts; a tunnel never returns bytes other than those sent. A tunnel cut
when a reload's drain ends, or during the Redis outage, reconnects and is
counted, not failed.

The level "before the load" is taken after one warm-up request of each kind
and one idle timeout, so that lazily opened resources (each shard's Redis
connections) are part of the baseline.
"""

import argparse
import asyncio
import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHURN_HOSTS = 20
IDLE_TIMEOUT = 10  # upstream_idle_timeout in the soak's config
DRAIN_TIMEOUT = 10
REDIS_GRACE = 10  # seconds after Redis answers again during which 5xx are expected
SAMPLE_EVERY = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def wait_port(port, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise SystemExit(f"{what} never opened port {port}")


class Backend:
    """A churn backend: HTTP/1.1 keep-alive, closes idle connections after 2 s."""

    def __init__(self, name):
        self.name = name
        self.conns = set()
        self.server = None
        self.port = None

    async def start(self):
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def serve(self, reader, writer):
        self.conns.add(writer)
        served = 0
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
                except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                served += 1
                path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
                status = b"404 Not Found" if path.startswith(b"/missing") else b"200 OK"
                close = served % 20 == 0
                body = self.name.encode()
                writer.write(
                    b"HTTP/1.1 %s\r\nContent-Length: %d\r\nX-Soak: churn\r\n%s\r\n%s"
                    % (status, len(body), b"Connection: close\r\n" if close else b"", body)
                )
                await writer.drain()
                if close:
                    return
        except ConnectionError:
            pass
        finally:
            self.conns.discard(writer)
            writer.close()

    def stop(self):
        self.server.close()
        for w in list(self.conns):
            w.transport.abort()


class EchoBackend:
    """WebSocket backend: answers the upgrade with 101, then echoes raw bytes."""

    async def start(self):
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def serve(self, reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            )
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()


class Soak:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="lopache-soak.")
        self.procs = []
        self.redis_port = free_port()
        self.http_port = free_port()
        self.admin_port = free_port()
        self.stable_port = free_port()
        self.backends = {}  # churn host index -> Backend
        self.routes = {}  # Redis key -> backend URL list
        self.redis_windows = []  # (down_since, up_again) epoch seconds
        self.tunnel = {"echoes": 0, "cuts": 0, "refused": 0, "corrupt": 0}
        self.events = []  # (elapsed, what)
        self.samples = []
        self.load_running = False
        self.started = time.time()

    # -- processes ---------------------------------------------------------
    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def set_route(self, host, urls):
        self.routes[f"frontend:{host}"] = [host.split(".")[0], *urls]
        # One MULTI so a lookup never sees the list half written.
        script = f"MULTI\nDEL frontend:{host}\nRPUSH frontend:{host} {' '.join(self.routes[f'frontend:{host}'])}\nEXEC\n"
        r = subprocess.run(["redis-cli", "-p", str(self.redis_port)], input=script, capture_output=True, text=True)
        return r.returncode == 0

    def start_redis(self):
        self.redis_proc = self.spawn(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--logfile", f"{self.work}/redis.log"]
        )

    async def seed(self):
        await wait_port(self.redis_port, "redis-server")
        for key, values in self.routes.items():
            host = key.split(":", 1)[1]
            self.set_route(host, values[1:])

    def workers(self):
        out = subprocess.run(["pgrep", "-P", str(self.lopache.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    # -- sampling ------------------------------------------------------------
    def sample(self, phase):
        pids = self.workers()
        rss = fds = 0
        for p in pids:
            try:
                with open(f"/proc/{p}/status") as f:
                    rss += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
                fds += len(os.listdir(f"/proc/{p}/fd"))
            except (OSError, AttributeError):
                pass  # a draining worker that just left
        ss = subprocess.run(["ss", "-Htanp", "state", "close-wait"], capture_output=True, text=True).stdout
        close_wait = sum(1 for line in ss.splitlines() if any(f"pid={p}," in line for p in pids))
        metrics = {"idle": 0, "pool": 0, "dns": 0, "route_cache": 0, "dead": 0, "opened": 0}
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=2).read().decode()
            for line in text.splitlines():
                if line.startswith("lopache_upstream_idle_connections{"):
                    metrics["idle"] += int(line.split()[-1])
                elif line.startswith("lopache_upstream_opened_total{"):
                    metrics["opened"] += int(line.split()[-1])
                elif m := re.match(r'lopache_shard_map_entries\{shard="\d+",map="(\w+)"\} (\d+)', line):
                    if m.group(1) in metrics:
                        metrics[m.group(1)] += int(m.group(2))
        except OSError:
            pass
        row = {
            "elapsed_s": round(time.time() - self.started),
            "phase": phase,
            "workers": len(pids),
            "rss_kb": rss,
            "fds": fds,
            "close_wait": close_wait,
            "idle_upstream": metrics["idle"],
            "pool_keys": metrics["pool"],
            "dns_entries": metrics["dns"],
            "route_cache_entries": metrics["route_cache"],
            "dead_entries": metrics["dead"],
            "upstream_opened": metrics["opened"],
        }
        self.samples.append(row)
        return row

    async def sampler(self):
        while self.load_running:
            row = self.sample("load")
            log(f"sample: workers {row['workers']} rss {row['rss_kb']} KB fds {row['fds']} close-wait "
                f"{row['close_wait']} idle {row['idle_upstream']} pool keys {row['pool_keys']} dns {row['dns_entries']}")
            await asyncio.sleep(SAMPLE_EVERY)

    def keep_smaps(self, phase):
        """With --smaps DIR: the workers' memory maps, to see what grew."""
        if not self.args.smaps:
            return
        os.makedirs(self.args.smaps, exist_ok=True)
        for p in self.workers():
            try:
                shutil.copy(f"/proc/{p}/smaps", f"{self.args.smaps}/{phase}-{p}.smaps")
            except OSError:
                pass

    # -- scenario --------------------------------------------------------------
    async def churn(self):
        n = 0
        while self.load_running:
            i = n % CHURN_HOSTS
            b = Backend(f"churn{n}")
            await b.start()
            host = "localhost" if n % 2 else "127.0.0.1"
            self.set_route(f"churn{i}.soak", [f"http://{host}:{b.port}"])
            old = self.backends.get(i)
            self.backends[i] = b
            if old:
                old.stop()
            n += 1
            await asyncio.sleep(self.args.churn_every)
        log(f"churn: {n} backends started")

    async def reloads(self):
        every = self.args.reload_every
        if every <= 0:
            return
        while True:
            await asyncio.sleep(every)
            if not self.load_running:
                return
            self.lopache.send_signal(signal.SIGHUP)
            self.events.append((round(time.time() - self.started), "reload"))

    async def redis_restart(self, at):
        await asyncio.sleep(at)
        down = time.time()
        self.redis_windows.append((down, float("inf")))  # closed when it is back
        self.redis_proc.terminate()
        self.redis_proc.wait()
        self.events.append((round(down - self.started), "redis down"))
        await asyncio.sleep(2)
        self.start_redis()
        await self.seed()
        up = time.time()
        self.redis_windows[-1] = (down, up)
        self.events.append((round(up - self.started), "redis up"))
        log(f"redis restarted: down {up - down:.1f} s")

    def in_redis_window(self, t):
        return any(down - 1 <= t <= up + REDIS_GRACE for down, up in self.redis_windows)

    async def tunnel_client(self, k, stop_at):
        msg_n = 0
        while time.time() < stop_at:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", self.http_port)
                w.write(b"GET /ws HTTP/1.1\r\nHost: ws.soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
                if not head.startswith(b"HTTP/1.1 101"):
                    self.tunnel["refused"] += 1
                    if not self.in_redis_window(time.time()):
                        log(f"tunnel {k}: refused outside the Redis outage: {head.splitlines()[0]!r}")
                        self.tunnel["corrupt"] += 1
                    w.close()
                    await asyncio.sleep(0.5)
                    continue
                while time.time() < stop_at:
                    msg_n += 1
                    msg = f"tunnel {k} message {msg_n} ".encode() + os.urandom(48).hex().encode()
                    w.write(msg)
                    await w.drain()
                    got = await asyncio.wait_for(r.readexactly(len(msg)), 10)
                    if got != msg:
                        self.tunnel["corrupt"] += 1
                        log(f"tunnel {k}: echo differs")
                    self.tunnel["echoes"] += 1
                    await asyncio.sleep(1)
                w.close()
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
                self.tunnel["cuts"] += 1
                await asyncio.sleep(0.5)

    def wrk_script(self, name, hosts, expected, missing_every=0, extra_headers=""):
        out = f"{self.work}/{name}.result"
        hosts_lua = ", ".join(f'"{h}"' for h in hosts)
        exp_lua = ", ".join(f"[{s}] = true" for s in expected)
        # wrk copies only strings, numbers and booleans out of a thread's Lua
        # state, so each thread keeps a global counter per status ("s200")
        # and a string of the statuses it saw, and flushes unexpected answers
        # per second ("time:count ") into a string when the second changes.
        script = f"""
local hosts = {{{hosts_lua}}}
local expected = {{{exp_lua}}}
local threads, i = {{}}, 0
seen, bad, bad_t, bad_n = "", "", 0, 0
function setup(thread) table.insert(threads, thread) end
function request()
  i = i + 1
  local host = hosts[(i % #hosts) + 1]
  if host == "UNKNOWN" then host = "unknown-" .. i .. ".soak" end
  local path = "/"
  if {missing_every} > 0 and i % {missing_every} == 0 then path = "/missing" end
  return wrk.format("GET", path, {{Host = host{extra_headers}}})
end
function delay() return {self.args.delay_ms} end
function response(status, headers, body)
  local key = "s" .. status
  if _G[key] == nil then _G[key] = 0; seen = seen .. status .. " " end
  _G[key] = _G[key] + 1
  if not expected[status] then
    local t = os.time()
    if t ~= bad_t then
      if bad_n > 0 then bad = bad .. bad_t .. ":" .. bad_n .. " " end
      bad_t, bad_n = t, 0
    end
    bad_n = bad_n + 1
  end
end
function done(summary, latency, requests)
  local f = io.open("{out}", "w")
  for _, t in ipairs(threads) do
    for code in string.gmatch(t:get("seen"), "%d+") do
      f:write("status ", code, " ", t:get("s" .. code), "\\n")
    end
    local all = t:get("bad") .. t:get("bad_t") .. ":" .. t:get("bad_n")
    for when, n in string.gmatch(all, "(%d+):(%d+)") do
      if tonumber(n) > 0 then f:write("bad ", when, " ", n, "\\n") end
    end
  end
  local e = summary.errors
  f:write("socket ", e.connect, " ", e.read, " ", e.write, " ", e.timeout, "\\n")
  f:close()
end
"""
        path = f"{self.work}/{name}.lua"
        with open(path, "w") as f:
            f.write(script)
        return path, out

    async def run(self):
        args = self.args
        seconds = int(args.minutes * 60)
        log(f"work dir {self.work}; load {seconds} s")
        # Stable backend: nginx, as in every benchmark.
        with open(f"{self.work}/backend.conf", "w") as f:
            f.write(f"""worker_processes 1; daemon off; pid {self.work}/backend.pid; error_log {self.work}/backend.err;
events {{ worker_connections 16384; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{self.stable_port}; location / {{ return 200 "hello"; }} }} }}
""")
        self.spawn(["nginx", "-c", f"{self.work}/backend.conf"])
        echo = EchoBackend()
        await echo.start()
        self.start_redis()
        self.routes["frontend:stable.soak"] = ["stable", f"http://127.0.0.1:{self.stable_port}"]
        self.routes["frontend:ws.soak"] = ["ws", f"http://127.0.0.1:{echo.port}"]
        await self.seed()
        await wait_port(self.stable_port, "nginx")
        for i in range(CHURN_HOSTS):
            b = Backend(f"seed{i}")
            await b.start()
            self.backends[i] = b
            self.set_route(f"churn{i}.soak", [f"http://127.0.0.1:{b.port}"])
        with open(f"{self.work}/lopache.toml", "w") as f:
            f.write(f"""driver = "redis://127.0.0.1:{self.redis_port}"
[server]
workers = {args.workers}
access_log = "none"
upstream_idle_timeout = {IDLE_TIMEOUT}
drain_timeout = {DRAIN_TIMEOUT}
dns_ttl = 5
dead_backend_ttl = 5
[http]
port = {self.http_port}
bind = ["127.0.0.1"]
[admin]
bind = "127.0.0.1:{self.admin_port}"
""")
        self.lopache = self.spawn([args.binary, "--config", f"{self.work}/lopache.toml"],
                                  stderr=open(f"{self.work}/lopache.log", "w"))
        await wait_port(self.http_port, "lopache")

        # Warm-up: one request of each kind, a tunnel, then one idle timeout.
        # (Asynchronously: the churn backends answer on this event loop.)
        for host in ["stable.soak", "churn0.soak", "unknown.soak"]:
            curl = await asyncio.create_subprocess_exec(
                "curl", "-s", "-o", "/dev/null", "-m", "10", "-H", f"Host: {host}",
                f"http://127.0.0.1:{self.http_port}/")
            await curl.wait()
        await asyncio.wait_for(self.tunnel_client(-1, time.time() + 1.5), 20)
        await asyncio.sleep(IDLE_TIMEOUT + 3)
        before = self.sample("before")
        log(f"before the load: {before}")
        self.keep_smaps("before")

        # Load.
        self.load_running = True
        stop_at = time.time() + seconds
        wrks = []
        kinds = [
            ("keepalive", ["stable.soak"], [200], 0, "", 24),
            ("close", ["stable.soak"], [200], 0, ', Connection = "close"', 4),
            ("churn", [f"churn{i}.soak" for i in range(CHURN_HOSTS)], [200, 404, 502, 503], 10, "", 8),
            ("unknown", ["UNKNOWN"], [400], 0, "", 2),
        ]
        for name, hosts, expected, missing, extra, conns in kinds:
            script, out = self.wrk_script(name, hosts, expected, missing, extra)
            p = await asyncio.create_subprocess_exec(
                "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "-s", script,
                f"http://127.0.0.1:{self.http_port}/", stdout=open(f"{self.work}/{name}.wrk", "w"))
            wrks.append((name, expected, p, out))
        tasks = [
            asyncio.create_task(self.churn()),
            asyncio.create_task(self.reloads()),
            asyncio.create_task(self.sampler()),
            asyncio.create_task(self.redis_restart(seconds / 2)),
            *[asyncio.create_task(self.tunnel_client(k, stop_at)) for k in range(args.tunnels)],
        ]
        for _, _, p, _ in wrks:
            await p.wait()
        self.load_running = False
        await asyncio.gather(*tasks)
        log("load stopped")

        # After: one idle timeout, the sweep, and the last reload's drain.
        settle = max(IDLE_TIMEOUT, DRAIN_TIMEOUT) + 3
        await asyncio.sleep(settle / 2)
        self.sample("settling")
        await asyncio.sleep(settle - settle / 2)
        after = self.sample("after")
        log(f"after the load: {after}")
        self.keep_smaps("after")
        return self.verdict(before, after, wrks)

    def verdict(self, before, after, wrks):
        failures = []
        for what in ["fds", "rss_kb"]:
            if after[what] > before[what] * 1.10:
                failures.append(f"{what}: {after[what]} after the load, {before[what]} before (> +10 %)")
        if after["close_wait"]:
            failures.append(f"{after['close_wait']} CLOSE-WAIT sockets after the load")
        report = []
        for name, expected, _, out in wrks:
            statuses, unexpected, excused, socket_errors = {}, 0, 0, "?"
            try:
                with open(out) as f:
                    for line in f:
                        kind, *rest = line.split()
                        if kind == "status":
                            statuses[int(rest[0])] = statuses.get(int(rest[0]), 0) + int(rest[1])
                        elif kind == "bad":
                            t, n = int(rest[0]), int(rest[1])
                            if self.in_redis_window(t):
                                excused += n
                            else:
                                unexpected += n
                        elif kind == "socket":
                            socket_errors = " ".join(rest)
            except OSError:
                failures.append(f"wrk {name} left no result")
                continue
            if socket_errors != "0 0 0 0":
                failures.append(f"wrk {name}: socket errors (connect read write timeout) {socket_errors}")
            if unexpected:
                failures.append(f"wrk {name}: {unexpected} responses outside {expected} while Redis was up")
            report.append(f"{name}: {sum(statuses.values())} responses {dict(sorted(statuses.items()))}, "
                          f"unexpected {unexpected} (and {excused} during the Redis outage), "
                          f"socket errors {socket_errors}")
        if self.tunnel["corrupt"]:
            failures.append(f"tunnels: {self.tunnel['corrupt']} wrong echoes or refusals while Redis was up")
        report.append(f"tunnels: {self.tunnel}")
        report.append("events: " + ", ".join(f"{t}s {w}" for t, w in self.events))
        return report, failures

    def write_results(self):
        out = self.args.out
        os.makedirs(out, exist_ok=True)
        with open(f"{out}/soak.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(self.samples[0]))
            w.writeheader()
            w.writerows(self.samples)
        with open(f"{out}/soak.dat", "w") as f:
            for r in self.samples:
                f.write(f"{r['elapsed_s'] / 60:.2f} {r['rss_kb'] / 1024:.1f} {r['fds']} {r['close_wait']} "
                        f"{r['idle_upstream']} {r['pool_keys']} {r['dns_entries']}\n")
        reloads = [t for t, w in self.events if w == "reload"]
        marks = "".join(
            f"set arrow from first {t / 60:.2f}, graph 0 to first {t / 60:.2f}, graph 1 nohead lc rgb '#cccccc' lw 1\n" for t in reloads)
        marks += "".join(
            f"set arrow from first {t / 60:.2f}, graph 0 to first {t / 60:.2f}, graph 1 nohead lc rgb '#cc0000' lw 2\n"
            for t, w in self.events if w == "redis down")
        gp = f"""set terminal svg size 900,460 dynamic font 'sans,11'
set output '{out}/soak.svg'
set title 'lopache soak: {self.args.minutes:g} min of churn (grey: reloads, red: Redis restart)'
set xlabel 'minutes'
set ylabel 'RSS of the workers (MB; two during a reload)'
set y2label 'count'
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key below horizontal
{marks}plot '{out}/soak.dat' using 1:2 with lines lw 2 title 'RSS (MB)', \\
     '' using 1:3 axes x1y2 with lines title 'file descriptors', \\
     '' using 1:4 axes x1y2 with lines title 'CLOSE-WAIT', \\
     '' using 1:5 axes x1y2 with lines title 'idle upstream conns', \\
     '' using 1:6 axes x1y2 with lines title 'pool keys', \\
     '' using 1:7 axes x1y2 with lines title 'DNS entries'
"""
        with open(f"{out}/soak.gp", "w") as f:
            f.write(gp)
        subprocess.run(["gnuplot", f"{out}/soak.gp"], check=False)

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("minutes", type=float)
    ap.add_argument("--binary", default=f"{ROOT}/target/release/lopache")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--reload-every", type=int, default=60, help="seconds between SIGHUPs; 0 = none")
    ap.add_argument("--churn-every", type=float, default=3)
    ap.add_argument("--tunnels", type=int, default=4)
    ap.add_argument("--delay-ms", type=int, default=5, help="each wrk connection's pause between requests")
    ap.add_argument("--out", default=f"{ROOT}/bench/results/soak")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    ap.add_argument("--smaps", help="copy the workers' /proc/PID/smaps here before and after the load")
    args = ap.parse_args()
    soak = Soak(args)
    try:
        report, failures = asyncio.run(soak.run())
        soak.write_results()
    finally:
        soak.cleanup()
    for line in report:
        print(line)
    if failures:
        print("SOAK FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print(f"soak passed; samples in {args.out}/soak.csv, chart {args.out}/soak.svg")


if __name__ == "__main__":
    main()

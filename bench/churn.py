#!/usr/bin/env python3
"""Route churn under load (run by bench/churn.sh, which installs the tools).

How fresh are the routes lopache serves while they change? For each mode
(lopache's route cache setting), for --seconds:

- wrk keeps --connections keep-alive connections busy on a stable host;
- a writer rewrites the route of `churn.example` on the Redis master every
  --every-ms milliseconds (MULTI / DEL / RPUSH / EXEC), each time with a new
  identifier `v<N>` and the same backend, and notes when each write returned;
- probers (--probers keep-alive connections, one request at a time) ask for
  `churn.example` with `X-Debug: 1` and read the version served from
  `x-debug-vhost`.

With --replica, lopache reads from a replica of the master (the writes still
go to the master), as on an edge box.

It reports, per mode: versions written, probes, probes answered with a
version older than the newest whose write had returned before the probe was
sent ("stale after the write"; replication lag counts here), probes answered
with a version older than the newest whose change report (CLIENT TRACKING,
heard by an observer connection like lopache's) had arrived before the probe
was sent ("stale after the report": what tracking promises to keep at 0),
and the time
from a write returning to the first probe answered with that version or a
newer one (p50, p99, max), plus wrk's req/s. Results go to
bench/results/churn/latest.md (replica.md with --replica).
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "churn.example"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} never opened port {port}")


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Redis:
    """A blocking RESP connection that reads whole replies of the simple kinds used here."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def reply(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind in (b"+", b"-", b":"):
            return rest
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.file.read(n + 2)[:-2]
        if kind == b"*":
            return [self.reply() for _ in range(max(int(rest), 0))]
        raise RuntimeError(f"unexpected reply {line!r}")

    def call(self, *args):
        self.sock.sendall(resp(*args))
        return self.reply()

    def pipeline(self, commands):
        self.sock.sendall(b"".join(resp(*c) for c in commands))
        return [self.reply() for _ in commands]


def start_redis(work, name, extra=()):
    port = free_port()
    directory = os.path.join(work, name)
    os.makedirs(directory, exist_ok=True)
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", directory, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, name)
    return proc, port


def wait_synced(port):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if b"master_link_status:up" in Redis(port).call("INFO", "replication"):
            return
        time.sleep(0.05)
    sys.exit("the replica never synced")


def start_backend(work):
    port = free_port()
    conf = os.path.join(work, "backend.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {work}/backend.pid; error_log {work}/backend.err;
events {{ worker_connections 16384; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port} reuseport; location / {{ return 200 "hello"; }} }} }}
""")
    proc = subprocess.Popen(["nginx", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, "backend")
    return proc, port


def start_lopache(work, read_port, write_port, mode):
    port = free_port()
    conf = os.path.join(work, f"lopache-{mode}.toml")
    cache = {
        "lookup": 'route_cache = "off"\n',
        "tracking": "",  # the default
        "cached": "route_cache_ms = 1000\n",
    }[mode]
    with open(conf, "w") as f:
        f.write(f"""driver = ["redis://127.0.0.1:{read_port}", "redis://127.0.0.1:{write_port}"]
[server]
access_log = "none"
workers = 2
debug_headers = true
{cache}[http]
port = {port}
bind = ["127.0.0.1"]
""")
    proc = subprocess.Popen([os.path.join(ROOT, "target/release/lopache"), "--config", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, "lopache")
    return proc, port


class Writer(threading.Thread):
    def __init__(self, master_port, backend_url, every, stop):
        super().__init__(daemon=True)
        self.redis = Redis(master_port)
        self.backend_url = backend_url
        self.every = every
        self.stop = stop
        self.done = []  # (version, monotonic time the write returned)

    def write(self, version):
        key = f"frontend:{HOST}"
        self.redis.pipeline([("MULTI",), ("DEL", key), ("RPUSH", key, f"v{version}", self.backend_url), ("EXEC",)])
        self.done.append((version, time.monotonic()))

    def run(self):
        version = len(self.done)
        next_at = time.monotonic()
        while not self.stop.is_set():
            version += 1
            self.write(version)
            next_at += self.every
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)


class Observer(threading.Thread):
    """Hears Redis's change reports for the churned key as lopache's
    tracking connection does (CLIENT TRACKING ... BCAST on the read side),
    and notes when each arrived. One write (MULTI ... EXEC) is one report,
    in order, so report k is version k's."""

    def __init__(self, read_port):
        super().__init__(daemon=True)
        self.redis = Redis(read_port)
        client_id = self.redis.call("CLIENT", "ID").decode()
        self.redis.call("CLIENT", "TRACKING", "on", "REDIRECT", client_id, "BCAST", "PREFIX", f"frontend:{HOST}")
        self.redis.call("SUBSCRIBE", "__redis__:invalidate")
        self.reports = []  # monotonic arrival times

    def run(self):
        while True:
            try:
                message = self.redis.reply()
            except (OSError, ValueError, RuntimeError):
                return  # Redis stopped at the end of the mode (EOF)
            if isinstance(message, list) and message and message[0] == b"message":
                self.reports.append(time.monotonic())


class Prober(threading.Thread):
    def __init__(self, port, stop):
        super().__init__(daemon=True)
        self.port = port
        self.stop = stop
        self.seen = []  # (sent, received, version)
        self.errors = 0

    def run(self):
        request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Debug: 1\r\n\r\n".encode()
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        file = sock.makefile("rb")
        while not self.stop.is_set():
            sent = time.monotonic()
            sock.sendall(request)
            status = file.readline()
            version, length = None, 0
            while (line := file.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "x-debug-vhost":
                    version = int(value.strip()[1:])
                elif name.lower() == "content-length":
                    length = int(value)
            file.read(length)
            received = time.monotonic()
            if b" 200 " not in status or version is None:
                self.errors += 1
                continue
            self.seen.append((sent, received, version))


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def measure(args, work, mode, master_port, read_port, backend_port):
    lopache, port = start_lopache(work, read_port, master_port, mode)
    try:
        master = Redis(master_port)
        master.call("DEL", "frontend:stable.example")
        master.call("RPUSH", "frontend:stable.example", "stable", f"http://127.0.0.1:{backend_port}")
        stop = threading.Event()
        writer = Writer(master_port, f"http://127.0.0.1:{backend_port}", args.every_ms / 1000, stop)
        master.call("DEL", f"frontend:{HOST}")
        replica = Redis(read_port)
        while replica.call("EXISTS", f"frontend:{HOST}").endswith(b"1"):
            time.sleep(0.01)  # the delete has reached the read side: it is no report
        observer = Observer(read_port)
        observer.start()
        writer.write(0)
        replica = Redis(read_port)
        while not replica.call("EXISTS", f"frontend:{HOST}").endswith(b"1"):
            time.sleep(0.01)  # the first version has reached the read side
        probers = [Prober(port, stop) for _ in range(args.probers)]
        wrk = subprocess.Popen(
            ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "-H", "Host: stable.example",
             f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, text=True)
        writer.start()
        for p in probers:
            p.start()
        out, _ = wrk.communicate()
        stop.set()
        writer.join()
        for p in probers:
            p.join()
    finally:
        lopache.terminate()
        lopache.wait()
    rps = next((float(l.split()[1]) for l in out.splitlines() if l.startswith("Requests/sec:")), float("nan"))
    done = writer.done
    seen = sorted(s for p in probers for s in p.seen)
    # Stale: served older than the newest version whose write returned before the probe was sent.
    stale, i, newest = 0, 0, 0
    for sent, _, version in seen:
        while i < len(done) and done[i][1] <= sent:
            newest = done[i][0]
            i += 1
        if version < newest:
            stale += 1
    # Stale after the report: older than the newest version whose change
    # report had reached a tracking connection when the probe was sent.
    reports = observer.reports
    if len(reports) < len(done) - 1:
        print(f"warning: {len(reports)} reports for {len(done)} writes", file=sys.stderr)
    stale_reported, i, newest = 0, 0, -1
    for sent, _, version in seen:
        while i < len(reports) and reports[i] <= sent:
            newest = i
            i += 1
        if version < newest:
            stale_reported += 1
    # Write returned -> first probe answered with that version or newer.
    lags, j = [], 0
    by_receipt = sorted(seen, key=lambda s: s[1])
    for version, at in done[1:]:
        while j < len(by_receipt) and (by_receipt[j][1] < at or by_receipt[j][2] < version):
            j += 1
        if j < len(by_receipt):
            lags.append((by_receipt[j][1] - at) * 1000)
    return {
        "mode": mode,
        "versions": len(done) - 1,
        "probes": len(seen),
        "errors": sum(p.errors for p in probers),
        "stale": stale,
        "stale_reported": stale_reported,
        "p50": percentile(lags, 50),
        "p99": percentile(lags, 99),
        "max": max(lags) if lags else float("nan"),
        "rps": rps,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--every-ms", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--probers", type=int, default=2)
    parser.add_argument("--modes", default="lookup,tracking,cached")
    parser.add_argument("--replica", action="store_true")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench/results/churn"))
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="lopache-churn-")
    procs = []
    try:
        master, master_port = start_redis(work, "master")
        procs.append(master)
        read_port = master_port
        if args.replica:
            replica, read_port = start_redis(work, "replica", ("--replicaof", "127.0.0.1", str(master_port)))
            procs.append(replica)
            wait_synced(read_port)
        backend, backend_port = start_backend(work)
        procs.append(backend)
        rows = [measure(args, work, m, master_port, read_port, backend_port) for m in args.modes.split(",")]
    finally:
        for p in procs:
            p.terminate()
            p.wait()
    os.makedirs(args.out, exist_ok=True)
    lines = [
        "# Route churn under load",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: `bench/churn.sh "
        f"{' '.join(sys.argv[1:])}`. A route rewritten every {args.every_ms:g} ms on the master"
        f"{' (lopache reads a replica)' if args.replica else ''}; {args.probers} probers ask for it one request at a"
        f" time while wrk keeps {args.connections} connections busy on another host.",
        "",
        "| mode | versions written | probes | stale after the write | stale after the report | write → served p50 ms | p99 ms | max ms | wrk req/s | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['versions']} | {r['probes']} | {r['stale']} | {r['stale_reported']} | {r['p50']:.2f} | "
                     f"{r['p99']:.2f} | {r['max']:.2f} | {r['rps']:,.0f} | {r['errors']} |")
    text = "\n".join(lines) + "\n"
    name = "replica.md" if args.replica else "latest.md"
    with open(os.path.join(args.out, name), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()

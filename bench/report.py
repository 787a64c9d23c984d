#!/usr/bin/env python3
"""Turns bench/run.sh measurements into bench/results/latest.md and the chart.

Usage: report.py RESULTS_CSV IDLE_CSV STAMP COMMAND OUT_DIR [H2H_CSV]
Ratios are medians of per-repetition ratios (each repetition ran every peer
back to back), so slow drifts of the machine cancel out. H2H_CSV holds runs
with two peers serving at the same time (bench/run.sh --h2h).
"""
import csv
import statistics
import sys
from collections import defaultdict

results_csv, idle_csv, stamp, command, out_dir = sys.argv[1:6]
rows = list(csv.DictReader(open(results_csv)))
idle = {r["peer"]: float(r["kb_per_conn"]) for r in csv.DictReader(open(idle_csv))}
h2h_rows = list(csv.DictReader(open(sys.argv[6]))) if len(sys.argv) > 6 else []
# The first runs (2026-12-07 05:11) were all lopache against nginx, in
# columns named after them.
for r in h2h_rows:
    if "a" not in r:
        r.update(a="lopache", b="nginx", a_rps=r["lopache_rps"], b_rps=r["nginx_rps"],
                 a_errors=r.get("lopache_errors"), b_errors=r.get("nginx_errors"))
H2H_PAIRS = list(dict.fromkeys((r["a"], r["b"]) for r in h2h_rows))
# "lopache" runs its default route cache (tracking), "lookup" has it off,
# "cached" is lopache with server.route_cache_ms (bench/run.sh --route-cache).
PEERS = [p for p in ["direct", "lopache", "lookup", "cached", "nginx", "haproxy", "pingora", "monolake"] if any(r["peer"] == p for r in rows)]

# Runs before --hosts took a list have no hosts column: one host.
for r in rows:
    r.setdefault("hosts", "1")
HOSTS = sorted({int(r["hosts"]) for r in rows})
# The general targets are judged at the smallest host count (one host in a
# default run); the route cache's at every count measured.
BASE = HOSTS[0]

by = defaultdict(dict)  # (mode, hosts, conns, rep) -> peer -> row
for r in rows:
    by[(r["mode"], int(r["hosts"]), int(r["conns"]), int(r["rep"]))][r["peer"]] = r


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def ratios(mode, conns, peer, other, field, invert=False, hosts=BASE):
    """The per-repetition ratios of `peer` to `other`."""
    out = []
    for (m, h, c, _), peers in by.items():
        if m == mode and h == hosts and c == conns and peer in peers and other in peers:
            a, b = float(peers[peer][field]), float(peers[other][field])
            if a > 0 and b > 0:
                out.append(b / a if invert else a / b)
    return out


def ratio(mode, conns, peer, other, field, invert=False, hosts=BASE):
    return med(ratios(mode, conns, peer, other, field, invert, hosts))


def ratio_with_range(mode, conns, peer, other, hosts):
    """A req/s ratio's median, and the lowest to highest repetition: with n
    repetitions the true median lies in that range with confidence
    1 - 2 / 2^n (94 % for 5), whatever the noise's distribution."""
    out = ratios(mode, conns, peer, other, "rps", hosts=hosts)
    value = med(out)
    if len(out) < 2:
        return value, f"{value:.3f} ×"
    return value, f"{value:.3f} × ({min(out):.2f}-{max(out):.2f})"


def h2h_runs(a, b, hosts, conns):
    return [r for r in h2h_rows if (r["a"], r["b"]) == (a, b)
            and int(r["hosts"]) == hosts and int(r["conns"]) == conns]


def head_to_head(hosts, conns, a="lopache", b="nginx", field="rps"):
    """a / b req/s (or, with field "cpu_us", CPU µs per request) in the runs
    where both served at once: the median, and the lowest to highest run.
    Runs from before CPU was measured have no "cpu_us"."""
    out = [float(r[f"a_{field}"]) / float(r[f"b_{field}"]) for r in h2h_runs(a, b, hosts, conns)
           if r.get(f"a_{field}") and float(r.get(f"b_{field}") or 0) > 0]
    value = med(out)
    if not out:
        return value, "-"
    return value, f"{value:.3f} × ({min(out):.2f}-{max(out):.2f}, {len(out)} runs)"


def stat(mode, conns, peer, field, hosts=BASE):
    return med([float(p[peer][field]) for (m, h, c, _), p in by.items() if m == mode and h == hosts and c == conns and peer in p])


def errors(mode, conns, peer, hosts=BASE):
    return sum(int(p[peer]["errors"]) for (m, h, c, _), p in by.items() if m == mode and h == hosts and c == conns and peer in p)


lines = [
    "# lopache benchmark results",
    "",
    f"Measured {stamp}.",
    f"Command: `{command}` (wrk -t1; 5-byte nginx backend with keep-alive; `lopache` keeps lookups until Redis reports a change (route_cache = tracking, the default){'; `lookup` looks every request up in Redis (route_cache = off)' if 'lookup' in PEERS else ''}{'; `cached` is lopache with a TTL route cache (route_cache_ms)' if 'cached' in PEERS else ''}; nginx, HAProxy{', pingora (its quick-start load balancer) and monolake' if {'pingora', 'monolake'} & set(PEERS) else ''} route statically).",
    "",
    "| mode | hosts | conns | peer | req/s | × direct | × nginx | × haproxy | p50 ms | p99 ms | p99 × nginx | p99 × haproxy | proxy µs/req | Redis µs/req | PSS MB | errors |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]
chart = []
for mode in ["free", "pinned"]:
    for hosts in HOSTS:
        for conns in [64, 256]:
            for peer in PEERS:
                rps = stat(mode, conns, peer, "rps", hosts)
                if rps != rps:  # nan: not measured
                    continue
                lines.append(
                    "| {} | {:,} | {} | {} | {:,.0f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {} | {} | {} | {} |".format(
                        mode, hosts, conns, peer, rps,
                        ratio(mode, conns, peer, "direct", "rps", hosts=hosts),
                        ratio(mode, conns, peer, "nginx", "rps", hosts=hosts),
                        ratio(mode, conns, peer, "haproxy", "rps", hosts=hosts),
                        stat(mode, conns, peer, "p50_ms", hosts), stat(mode, conns, peer, "p99_ms", hosts),
                        ratio(mode, conns, peer, "nginx", "p99_ms", hosts=hosts),
                        ratio(mode, conns, peer, "haproxy", "p99_ms", hosts=hosts),
                        "-" if peer == "direct" else "{:.1f}".format(stat(mode, conns, peer, "proxy_us", hosts)),
                        "{:.2f}".format(stat(mode, conns, peer, "redis_us", hosts)) if peer in ("lopache", "lookup", "cached") else "-",
                        "-" if peer == "direct" else "{:.1f}".format(stat(mode, conns, peer, "pss_kb", hosts) / 1024),
                        errors(mode, conns, peer, hosts),
                    )
                )
                group = f"{mode}/{conns}" if len(HOSTS) == 1 else f"{mode}/{hosts}h/{conns}"
                chart.append((group, peer, rps))

if h2h_rows:
    lines += ["", "Head to head (free mode): two peers serving at the same time, each driven by "
              "its own wrk with the connections shown; the first peer's req/s over the "
              "second's, and its CPU time per request over the second's (each proxy's "
              "processes' CPU over the requests its wrk counted), median (lowest-highest "
              "run). Both see the same machine, so the VM's drift, which reaches 30 % between "
              "runs taken in turn, cancels out. The req/s ratio is how much more one serves "
              "than the other with the CPU the scheduler shares out between them; that share "
              "need not be equal, so the CPU ratio says which spends less per request.", "",
              "| peers | hosts | conns each | req/s ratio | CPU per request ratio | errors |",
              "|---|---|---|---|---|---|"]
    for a, b in H2H_PAIRS:
        for hosts in HOSTS:
            for conns in [64, 256]:
                r, shown = head_to_head(hosts, conns, a, b)
                if r != r:
                    continue
                _, cpu = head_to_head(hosts, conns, a, b, "cpu_us")
                runs = h2h_runs(a, b, hosts, conns)
                # Runs from before errors were counted show none.
                errs = "-" if not runs[0]["a_errors"] else ", ".join(
                    str(sum(int(x[f"{side}_errors"]) for x in runs)) for side in ("a", "b"))
                lines.append(f"| {a} / {b} | {hosts:,} | {conns} | {shown} | {cpu} | {errs} |")

lines += ["", "Memory per idle keep-alive connection (PSS growth / connections):", ""]
lines += ["| peer | KB per idle connection |", "|---|---|"]
lines += [f"| {p} | {v:.2f} |" for p, v in idle.items()]


def check(label, value, ok):
    return f"| {label} | {value} | {'met' if ok else 'not met'} |"


def targets(peer, title, memory_and_redis):
    """The issue's targets for one lopache peer (free mode unless noted)."""
    cpu64 = stat("free", 64, peer, "proxy_us") + stat("free", 64, peer, "redis_us")
    cpu256 = stat("free", 256, peer, "proxy_us") + stat("free", 256, peer, "redis_us")
    r64n, r64h = ratio("free", 64, peer, "nginx", "rps"), ratio("free", 64, peer, "haproxy", "rps")
    r256n, r256h = ratio("free", 256, peer, "nginx", "rps"), ratio("free", 256, peer, "haproxy", "rps")
    p99n, p99h = ratio("free", 64, peer, "nginx", "p99_ms"), ratio("free", 64, peer, "haproxy", "p99_ms")
    errs = sum(errors(m, c, peer, h) for m in ["free", "pinned"] for c in [64, 256] for h in HOSTS)
    rows = [
        "",
        title,
        "",
        "| target | measured | |",
        "|---|---|---|",
        check("lopache + Redis CPU ≤ 15 µs/req at 64 conns", f"{cpu64:.1f} µs", cpu64 <= 15),
        check("lopache + Redis CPU ≤ 16 µs/req at 256 conns", f"{cpu256:.1f} µs", cpu256 <= 16),
        check("throughput ≥ 1.15 × nginx at 64", f"{r64n:.2f} ×", r64n >= 1.15),
        check("throughput ≥ 1.15 × HAProxy at 64", f"{r64h:.2f} ×", r64h >= 1.15),
        check("throughput ≥ 1.6 × nginx at 256", f"{r256n:.2f} ×", r256n >= 1.6),
        check("throughput ≥ 1.1 × HAProxy at 256", f"{r256h:.2f} ×", r256h >= 1.1),
        check("p99 ≤ 0.8 × nginx's (64)", f"{p99n:.2f} ×", p99n <= 0.8),
        check("p99 ≤ HAProxy's (64)", f"{p99h:.2f} ×", p99h <= 1.0),
    ]
    if memory_and_redis:
        kb = idle.get(peer, float("nan"))
        redis64 = stat("free", 64, peer, "redis_us")
        rows += [
            check("≤ 4 KB per idle keep-alive connection", f"{kb:.2f} KB", kb <= 4),
            check("Redis ≤ 3 µs per routed request (64)", f"{redis64:.2f} µs", redis64 <= 3),
        ]
    return rows + [check("zero errors and non-2xx", str(errs), errs == 0)]


at = "" if BASE == 1 else f", {BASE:,} hosts"
lines += targets("lopache", f"Targets (free mode unless noted{at}):", True)
if "cached" in PEERS:
    lines += targets("cached", "The same targets with the TTL route cache (`cached`):", False)
if "lookup" in PEERS:
    # The route cache's targets: Redis nearly idle with tracking, at least
    # as fast as the TTL cache, and well ahead of nginx with many hosts.
    rows = ["", "Route cache targets (free mode; `lopache` tracks, `lookup` does not):", "",
            "| target | measured | |", "|---|---|---|"]
    for hosts in HOSTS:
        for conns in [64, 256]:
            where = f"{hosts:,} host{'s' if hosts > 1 else ''}, {conns} conns"
            redis = stat("free", conns, "lopache", "redis_us", hosts)
            rows.append(check(f"Redis ≤ 0.2 µs per request with tracking ({where})", f"{redis:.2f} µs", redis <= 0.2))
            gain = ratio("free", conns, "lopache", "lookup", "rps", hosts=hosts)
            rows.append(check(f"tracking ≥ lookup per request ({where})", f"{gain:.2f} ×", gain >= 1))
            if "cached" in PEERS:
                vs_ttl, shown = ratio_with_range("free", conns, "lopache", "cached", hosts)
                rows.append(check(f"tracking ≥ the TTL cache ({where}, in turn)", shown, vs_ttl >= 1))
                vs_ttl, shown = head_to_head(hosts, conns, "lopache", "cached")
                if vs_ttl == vs_ttl:
                    rows.append(check(f"tracking ≥ the TTL cache ({where}, head to head)", shown, vs_ttl >= 1))
    if 1000 in HOSTS:
        r, shown = ratio_with_range("free", 256, "lopache", "nginx", 1000)
        rows.append(check("1,000 hosts: ≥ 1.05 × nginx at 256 (in turn)", shown, r >= 1.05))
        r, shown = head_to_head(1000, 256)
        if r == r:
            rows.append(check("1,000 hosts: ≥ 1.05 × nginx at 256 (head to head)", shown, r >= 1.05))
        r, shown = head_to_head(1000, 256, field="cpu_us")
        if r == r:
            rows.append(check("1,000 hosts: CPU per request ≤ nginx's / 1.05 at 256 (head to head)",
                              shown, r <= 1 / 1.05))
    reps = len({k[3] for k in by})
    rows += ["", f"Ratios are medians of the {reps} repetitions' ratios; in brackets the lowest and "
             f"highest, which hold the true median with {100 * (1 - 2 / 2 ** reps):.0f} % confidence"
             + (". Head to head: the median of every run's ratio, with the lowest and highest run." if h2h_rows else ".")]
    lines += rows
open(f"{out_dir}/latest.md", "w").write("\n".join(lines) + "\n")

with open(f"{out_dir}/chart.dat", "w") as f:
    # Groups in the order the table lists them.
    groups = list(dict.fromkeys(g for g, _, _ in chart))
    f.write("group " + " ".join(PEERS) + "\n")
    for g in groups:
        vals = {p: r for gg, p, r in chart if gg == g}
        f.write(g + " " + " ".join(f"{vals.get(p, 0):.0f}" for p in PEERS) + "\n")
with open(f"{out_dir}/chart.gp", "w") as f:
    f.write(f"""set terminal svg size 900,420 font "sans,12"
set output "{out_dir}/latest.svg"
set title "Requests per second (median of repetitions), {stamp.split(',')[0]}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set key autotitle columnhead outside right top
set ylabel "req/s"
set grid ytics
set yrange [0:*]
plot for [i=2:{len(PEERS) + 1}] "{out_dir}/chart.dat" using i:xtic(1)
""")
print(open(f"{out_dir}/latest.md").read())

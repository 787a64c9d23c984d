//! Metrics: per-shard counters, each touched only by its own shard (relaxed
//! atomics on the shard's own cache lines, so the admin thread can read them
//! without locks), summed per shard into Prometheus text on scrape.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// A latency histogram: a count per bucket (not cumulative), then +Inf.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        add(&self.counts[bucket], 1);
        add(&self.sum_us, took.as_micros() as u64);
    }

    /// Writes the `_bucket`, `_sum` and `_count` series for one shard.
    fn render(&self, out: &mut String, name: &str, shard: usize) {
        let mut cumulative = 0;
        for (b, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.counts[b].load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{shard=\"{shard}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[LATENCY_BUCKETS.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{shard=\"{shard}\",le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{shard=\"{shard}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{shard=\"{shard}\"}} {cumulative}");
    }
}

#[derive(Default)]
pub struct ShardMetrics {
    /// Requests that reached routing, by status class 1xx..5xx.
    pub requests: [AtomicU64; 5],
    /// Client connections open now.
    pub connections: AtomicU64,
    /// WebSocket tunnels open now.
    pub tunnels: AtomicU64,
    pub dead_marks: AtomicU64,
    /// Dead marks the write Redis did not take (down, or a failover).
    pub dead_marks_lost: AtomicU64,
    pub retries: AtomicU64,
    pub redis_errors: AtomicU64,
    /// Reads that joined identical commands already queued for Redis.
    pub redis_shared: AtomicU64,
    /// Route cache: requests served a cached lookup, and first lookups
    /// that went to Redis while the cache was on.
    pub route_cache_hits: AtomicU64,
    pub route_cache_misses: AtomicU64,
    /// Tracking: keys Redis reported changed, reports that cleared
    /// everything from a server, and tracking sessions re-established.
    pub route_cache_invalidations: AtomicU64,
    pub route_cache_flushes: AtomicU64,
    pub route_cache_reconnects: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_failures: AtomicU64,
    /// Connections on a `proxy_protocol` listener closed for a missing,
    /// malformed or late PROXY header.
    pub proxy_protocol_refused: AtomicU64,
    /// Health checks run, failed, and backends that went down or up (the
    /// worker's one checker counts on shard 0).
    pub health_checks: AtomicU64,
    pub health_failures: AtomicU64,
    pub health_changes: AtomicU64,
    pub access_log_dropped: AtomicU64,
    /// lopache's own shortages while connecting upstream (EMFILE, ENFILE,
    /// ENOBUFS, ENOMEM, EADDRNOTAVAIL), answered 503 and never blamed on a backend.
    pub local_errors: AtomicU64,
    /// Requests that found every connection to their backend in use for
    /// `connect_timeout` (503).
    pub pool_exhausted: AtomicU64,
    /// Request heads or bodies the client did not finish in time (408).
    pub client_timeouts: AtomicU64,
    /// Idle upstream connections kept in the pool (refreshed every second,
    /// after the sweep that closes expired and peer-closed ones).
    pub pool_idle: AtomicU64,
    /// Upstream connections opened.
    pub upstream_opened: AtomicU64,
    /// Idle upstream connections the sweep closed (expired or closed by
    /// the backend).
    pub upstream_idle_closed: AtomicU64,
    /// Entries of the shard's per-backend and per-host maps (refreshed
    /// every second): pool keys, names resolved, route cache, dead flags,
    /// certificates from Redis.
    pub map_sizes: [AtomicU64; 5],
    /// Request head to the end of the answer.
    pub request_latency: Histogram,
    /// Upstream request sent to the backend's response complete.
    pub backend_latency: Histogram,
    /// One pipelined Redis batch: write to last reply.
    pub redis_rtt: Histogram,
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

pub fn sub(counter: &AtomicU64, n: u64) {
    counter.fetch_sub(n, Relaxed);
}

impl ShardMetrics {
    /// Counts one routed request with its final status, its total time and
    /// the time its backend took (if one answered).
    pub fn request(&self, status: u16, total: Duration, backend: Option<Duration>) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        add(&self.requests[class], 1);
        self.request_latency.observe(total);
        if let Some(took) = backend {
            self.backend_latency.observe(took);
        }
    }
}

/// The maps of `ShardMetrics::map_sizes`, in order.
pub const MAP_NAMES: [&str; 5] = ["pool", "dns", "route_cache", "dead", "certificates"];

/// Selects one of a shard's histograms.
type PickHistogram = fn(&ShardMetrics) -> &Histogram;

/// The Prometheus text exposition of every shard's counters.
/// One per-shard counter or gauge: its name, Prometheus type, help text and
/// where each shard keeps it.
struct Series {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&ShardMetrics) -> &AtomicU64,
}

/// The plain per-shard series, in the order `/metrics` shows them (the
/// pool's idle connections come after the map sizes).
const SERIES: &[Series] = &[
    Series {
        name: "lopache_client_connections",
        kind: "gauge",
        help: "Client connections open.",
        value: |m| &m.connections,
    },
    Series {
        name: "lopache_tunnels",
        kind: "gauge",
        help: "WebSocket tunnels open.",
        value: |m| &m.tunnels,
    },
    Series {
        name: "lopache_dead_marks_total",
        kind: "counter",
        help: "Backends marked dead.",
        value: |m| &m.dead_marks,
    },
    Series {
        name: "lopache_dead_marks_lost_total",
        kind: "counter",
        help: "Dead marks the write Redis did not take (down, or between masters in a failover).",
        value: |m| &m.dead_marks_lost,
    },
    Series {
        name: "lopache_retries_total",
        kind: "counter",
        help: "Requests retried on another backend.",
        value: |m| &m.retries,
    },
    Series {
        name: "lopache_redis_errors_total",
        kind: "counter",
        help: "Route lookups Redis did not answer.",
        value: |m| &m.redis_errors,
    },
    Series {
        name: "lopache_redis_shared_lookups_total",
        kind: "counter",
        help: "Route lookups answered by an identical lookup already queued for the same pipeline write.",
        value: |m| &m.redis_shared,
    },
    Series {
        name: "lopache_route_cache_hits_total",
        kind: "counter",
        help: "Requests served a cached route lookup.",
        value: |m| &m.route_cache_hits,
    },
    Series {
        name: "lopache_route_cache_misses_total",
        kind: "counter",
        help: "Requests whose route was looked up in Redis while the route cache was on.",
        value: |m| &m.route_cache_misses,
    },
    Series {
        name: "lopache_route_cache_invalidations_total",
        kind: "counter",
        help: "Route keys Redis reported changed (client tracking).",
        value: |m| &m.route_cache_invalidations,
    },
    Series {
        name: "lopache_route_cache_flushes_total",
        kind: "counter",
        help: "Times the route cache of a Redis server was emptied: a flush reported by Redis, or tracking lost.",
        value: |m| &m.route_cache_flushes,
    },
    Series {
        name: "lopache_route_cache_tracking_reconnects_total",
        kind: "counter",
        help: "Client tracking sessions re-established after one was lost.",
        value: |m| &m.route_cache_reconnects,
    },
    Series {
        name: "lopache_tls_handshakes_total",
        kind: "counter",
        help: "TLS handshakes completed.",
        value: |m| &m.tls_handshakes,
    },
    Series {
        name: "lopache_tls_handshake_failures_total",
        kind: "counter",
        help: "TLS handshakes failed or timed out.",
        value: |m| &m.tls_failures,
    },
    Series {
        name: "lopache_proxy_protocol_refused_total",
        kind: "counter",
        help: "Connections closed for a missing, malformed or late PROXY protocol header.",
        value: |m| &m.proxy_protocol_refused,
    },
    Series {
        name: "lopache_healthchecks_total",
        kind: "counter",
        help: "Active health checks run (the worker's checker counts on shard 0).",
        value: |m| &m.health_checks,
    },
    Series {
        name: "lopache_healthcheck_failures_total",
        kind: "counter",
        help: "Active health checks that failed.",
        value: |m| &m.health_failures,
    },
    Series {
        name: "lopache_healthcheck_state_changes_total",
        kind: "counter",
        help: "Backends that active health checks found down, or up again.",
        value: |m| &m.health_changes,
    },
    Series {
        name: "lopache_access_log_dropped_total",
        kind: "counter",
        help: "Access log lines dropped.",
        value: |m| &m.access_log_dropped,
    },
    Series {
        name: "lopache_local_errors_total",
        kind: "counter",
        help: "Upstream connections lopache could not open for lack of its own resources (descriptors, ports, memory); answered 503.",
        value: |m| &m.local_errors,
    },
    Series {
        name: "lopache_pool_exhausted_total",
        kind: "counter",
        help: "Requests answered 503 because every connection to their backend stayed in use for connect_timeout.",
        value: |m| &m.pool_exhausted,
    },
    Series {
        name: "lopache_client_timeouts_total",
        kind: "counter",
        help: "Request heads or bodies not received within client_header_timeout or client_body_timeout (408).",
        value: |m| &m.client_timeouts,
    },
    Series {
        name: "lopache_upstream_opened_total",
        kind: "counter",
        help: "Upstream connections opened.",
        value: |m| &m.upstream_opened,
    },
    Series {
        name: "lopache_upstream_idle_closed_total",
        kind: "counter",
        help: "Idle upstream connections closed by the pool's sweep (expired, or closed by the backend).",
        value: |m| &m.upstream_idle_closed,
    },
];

const POOL_IDLE: Series = Series {
    name: "lopache_upstream_idle_connections",
    kind: "gauge",
    help: "Idle upstream connections in the pool.",
    value: |m| &m.pool_idle,
};

/// One series' HELP, TYPE and a line per shard.
fn render_series(out: &mut String, shards: &[std::sync::Arc<ShardMetrics>], series: &Series) {
    let (name, kind, help) = (series.name, series.kind, series.help);
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (i, m) in shards.iter().enumerate() {
        let value = (series.value)(m).load(Relaxed);
        let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {value}");
    }
}

pub fn render(shards: &[std::sync::Arc<ShardMetrics>]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP lopache_requests_total Requests that reached routing, by status class.\n# TYPE lopache_requests_total counter"
    );
    for (i, m) in shards.iter().enumerate() {
        for (c, n) in m.requests.iter().enumerate() {
            let _ = writeln!(
                out,
                "lopache_requests_total{{shard=\"{i}\",class=\"{}xx\"}} {}",
                c + 1,
                n.load(Relaxed)
            );
        }
    }
    for series in SERIES {
        render_series(&mut out, shards, series);
    }
    let _ = writeln!(
        out,
        "# HELP lopache_shard_map_entries Entries of a shard's per-backend and per-host maps.\n# TYPE lopache_shard_map_entries gauge"
    );
    for (i, m) in shards.iter().enumerate() {
        for (name, n) in MAP_NAMES.iter().zip(&m.map_sizes) {
            let _ = writeln!(
                out,
                "lopache_shard_map_entries{{shard=\"{i}\",map=\"{name}\"}} {}",
                n.load(Relaxed)
            );
        }
    }
    render_series(&mut out, shards, &POOL_IDLE);
    let histograms: [(&str, &str, PickHistogram); 3] = [
        (
            "lopache_request_seconds",
            "Time from request head to the end of the answer.",
            |m| &m.request_latency,
        ),
        (
            "lopache_backend_seconds",
            "Time from sending the request upstream to the end of the backend's response.",
            |m| &m.backend_latency,
        ),
        (
            "lopache_redis_roundtrip_seconds",
            "Time for one pipelined batch of Redis commands to be answered.",
            |m| &m.redis_rtt,
        ),
    ];
    for (name, help, pick) in histograms {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, m) in shards.iter().enumerate() {
            pick(m).render(&mut out, name, i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn render_sums_classes_and_buckets() {
        let m = Arc::new(ShardMetrics::default());
        m.request(
            200,
            Duration::from_micros(300),
            Some(Duration::from_micros(200)),
        );
        m.request(404, Duration::from_millis(3), None);
        m.request(502, Duration::from_secs(9), Some(Duration::from_secs(9)));
        add(&m.connections, 2);
        let text = render(&[m]);
        assert!(text.contains("lopache_requests_total{shard=\"0\",class=\"2xx\"} 1"));
        assert!(text.contains("lopache_requests_total{shard=\"0\",class=\"4xx\"} 1"));
        assert!(text.contains("lopache_requests_total{shard=\"0\",class=\"5xx\"} 1"));
        assert!(text.contains("lopache_client_connections{shard=\"0\"} 2"));
        assert!(text.contains("lopache_request_seconds_bucket{shard=\"0\",le=\"0.0005\"} 1"));
        assert!(text.contains("lopache_request_seconds_bucket{shard=\"0\",le=\"0.005\"} 2"));
        assert!(text.contains("lopache_request_seconds_bucket{shard=\"0\",le=\"+Inf\"} 3"));
        assert!(text.contains("lopache_request_seconds_count{shard=\"0\"} 3"));
        assert!(text.contains("lopache_backend_seconds_bucket{shard=\"0\",le=\"0.00025\"} 1"));
        assert!(text.contains("lopache_backend_seconds_count{shard=\"0\"} 2"));
        assert!(text.contains("lopache_backend_seconds_sum{shard=\"0\"} 9.0002"));
        assert!(text.contains("lopache_redis_roundtrip_seconds_count{shard=\"0\"} 0"));
    }
}

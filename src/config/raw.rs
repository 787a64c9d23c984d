//! The config file as written: serde structs that mirror the README's configuration table key for
//! key, with every default filled in and unknown keys refused. `validate`
//! turns this into the frozen [`super::Config`].

use serde::{Deserialize, Serialize};

/// `driver`: one Redis URL, or a list whose first is read from and last written to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "a Redis URL or a list of Redis URLs")]
pub enum DriverSpec {
    One(String),
    Many(Vec<String>),
}

impl Default for DriverSpec {
    fn default() -> Self {
        DriverSpec::One("redis://127.0.0.1:6379".into())
    }
}

impl DriverSpec {
    /// The same shape with every URL passed through `f` (e.g. masking passwords).
    pub fn map(&self, f: impl Fn(&str) -> String) -> DriverSpec {
        match self {
            DriverSpec::One(u) => DriverSpec::One(f(u)),
            DriverSpec::Many(v) => DriverSpec::Many(v.iter().map(|u| f(u)).collect()),
        }
    }

    pub fn urls(&self) -> Vec<&str> {
        match self {
            DriverSpec::One(u) => vec![u.as_str()],
            DriverSpec::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub driver: DriverSpec,
    pub user: String,
    pub group: String,
    pub server: RawServer,
    pub http: RawHttp,
    pub https: RawHttps,
    pub admin: RawAdmin,
    pub healthcheck: RawHealthcheck,
    pub limits: crate::http::Limits,
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub workers: u32,
    pub max_sockets: u32,
    pub tcp_timeout: u64,
    pub dead_backend_ttl: u64,
    pub retry_on_error: u32,
    pub access_log: String,
    pub http_keep_alive: bool,
    pub dead_backend_on_500: bool,
    pub static_dir: String,
    pub debug: bool,
    pub connect_timeout: u64,
    pub response_timeout: u64,
    /// Client connections one shard holds open at once; more wait in the kernel backlog.
    pub max_connections: u32,
    /// Milliseconds a Redis lookup may take before the request gets 503.
    pub redis_timeout_ms: u64,
    /// Seconds an idle pooled upstream connection is kept.
    pub upstream_idle_timeout: u64,
    /// Seconds a resolved backend host name is cached.
    pub dns_ttl: u64,
    /// Seconds a WebSocket tunnel may pass no byte before it is closed; 0 = never.
    pub websocket_idle_timeout: u64,
    /// PEM file of extra CA certificates trusted for `https://` backends.
    pub backend_ca: String,
    /// Seconds SIGTERM/SIGINT wait for requests and tunnels to finish.
    pub drain_timeout: u64,
    /// Worker RSS in MiB above which a fresh worker takes over; 0 = off.
    pub memory_limit_mb: u64,
    /// How a shard reuses lookups: "tracking" (kept until Redis reports a
    /// change), "ttl" (kept `route_cache_ms`), or "off" (Redis every time).
    pub route_cache: String,
    /// Milliseconds a shard reuses a host's lookup in the "ttl" mode; a
    /// value above 0 selects that mode.
    pub route_cache_ms: u64,
    /// Honour a client's `X-Debug` header with `x-debug-*` response headers
    /// (backend URLs and timings). Hipache/Lopache JSON configs turn it on.
    pub debug_headers: bool,
    /// Forward client headers whose names contain `_` (nginx's setting of the same name).
    pub underscores_in_headers: bool,
    /// Bytes of a request body read completely before an upstream connection
    /// is taken (nginx `proxy_request_buffering`, HAProxy `http-buffer-request`);
    /// larger bodies start streaming once this much has arrived. 0 = off.
    pub request_buffer_bytes: u64,
    /// Seconds for reading a buffered request body, and for each wait for
    /// body bytes while streaming; over it: 408 (or a cut connection).
    pub client_body_timeout: u64,
    /// Seconds for one whole request head from its first byte; over it: 408.
    pub client_header_timeout: u64,
    /// Bytes of one response read from the backend ahead of a slow client,
    /// so that the backend's connection is released early.
    pub response_buffer_bytes: u64,
    /// MiB one shard holds for slow peers, request bodies buffered and
    /// responses read ahead together.
    pub buffer_budget_mb: u64,
    /// Peers (addresses or ranges) whose connections on a `proxy_protocol`
    /// listener carry the header; empty = every peer's. Others are served
    /// as direct clients.
    pub proxy_protocol_from: Vec<String>,
    /// A header that carries each request's ID to the backend, back to the
    /// client and into the access log (e.g. `X-Request-Id`); "" = off.
    pub request_id_header: String,
    /// With `access_log = "syslog..."`: the facility and APP-NAME.
    pub syslog_facility: String,
    pub syslog_tag: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            workers: 0,
            max_sockets: 100,
            tcp_timeout: 30,
            dead_backend_ttl: 30,
            retry_on_error: 3,
            access_log: DEFAULT_ACCESS_LOG.into(),
            http_keep_alive: true,
            dead_backend_on_500: true,
            static_dir: String::new(),
            debug: false,
            connect_timeout: 5,
            response_timeout: 60,
            max_connections: 10_000,
            redis_timeout_ms: 1000,
            upstream_idle_timeout: 30,
            dns_ttl: 30,
            websocket_idle_timeout: 3600,
            backend_ca: String::new(),
            drain_timeout: 30,
            memory_limit_mb: 0,
            route_cache: "tracking".into(),
            route_cache_ms: 0,
            debug_headers: false,
            underscores_in_headers: false,
            request_buffer_bytes: DEFAULT_REQUEST_BUFFER_BYTES,
            client_body_timeout: 30,
            client_header_timeout: 10,
            response_buffer_bytes: 1 << 20,
            buffer_budget_mb: 256,
            proxy_protocol_from: Vec::new(),
            request_id_header: String::new(),
            syslog_facility: "local0".into(),
            syslog_tag: "lopache".into(),
        }
    }
}

pub const DEFAULT_REQUEST_BUFFER_BYTES: u64 = 64 * 1024;

pub const DEFAULT_ACCESS_LOG: &str = "/var/log/lopache/access.log";

/// A bind entry: `"127.0.0.1"`, `"[::1]:8080"`, or a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, expecting = "an address string or a table { address, port }")]
pub enum BindSpec {
    Address(String),
    Table(BindTable),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindTable {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// HTTPS only: this listener's own certificate chain and key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// This listener's own `proxy_protocol` (the section's by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    pub port: u16,
    pub bind: Vec<BindSpec>,
    /// Every connection starts with a PROXY protocol (v1 or v2) header.
    pub proxy_protocol: bool,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            port: 80,
            bind: vec![BindSpec::Address("127.0.0.1".into())],
            proxy_protocol: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttps {
    pub port: u16,
    pub bind: Vec<BindSpec>,
    pub cert: String,
    pub key: String,
    /// PEM files whose certificates are sent after the default certificate's
    /// own chain (intermediates kept apart; Hipache's `https.ca`).
    pub chain: Vec<String>,
    pub certificates_dir: String,
    pub redis_certificates: bool,
    /// Seconds a shard keeps what it found in Redis for a name.
    pub redis_certificates_ttl: u64,
    /// Certificates from Redis one shard keeps (least recently used go first).
    pub redis_certificates_cache: u32,
    pub preset: String,
    /// Every connection starts with a PROXY protocol header, before TLS.
    pub proxy_protocol: bool,
}

impl Default for RawHttps {
    fn default() -> Self {
        RawHttps {
            port: 443,
            bind: Vec::new(),
            cert: String::new(),
            key: String::new(),
            chain: Vec::new(),
            certificates_dir: String::new(),
            redis_certificates: false,
            redis_certificates_ttl: 30,
            redis_certificates_cache: 1000,
            preset: "intermediate".into(),
            proxy_protocol: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub bind: String,
}

/// Active health checks of the backends of frontends that have a
/// `healthcheck:<host>` hash (PlanB's key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHealthcheck {
    pub enabled: bool,
    /// Milliseconds between two checks of one backend.
    pub interval_ms: u64,
    /// Milliseconds one check may take, connection included.
    pub timeout_ms: u64,
    /// The path checked when the hash names none.
    pub path: String,
    /// Consecutive passes that bring a dead backend back.
    pub rise: u32,
    /// Consecutive failures that mark a backend dead.
    pub fall: u32,
    /// Checks running at once.
    pub concurrency: u32,
}

impl Default for RawHealthcheck {
    fn default() -> Self {
        RawHealthcheck {
            enabled: false,
            interval_ms: 2000,
            timeout_ms: 1000,
            path: "/".into(),
            rise: 2,
            fall: 3,
            concurrency: 64,
        }
    }
}

/// A Lopache route (README, "Routing rules"): parsed and validated now, active once
/// routing rules land.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub condition: RawCondition,
    pub destination: RawDestination,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawCondition {
    And(Vec<RawCondition>),
    Or(Vec<RawCondition>),
    Not(Box<RawCondition>),
    PathPrefix(String),
    /// `driver` (optional, a lopache extension matching Lopache's JSON) names
    /// the Redis holding the path sets; by default the top-level driver's.
    PathMatches {
        prefix: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        driver: Option<DriverSpec>,
    },
    IncludedInSegment {
        cookie: String,
        max_segment_id: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawDestination {
    RandomBackendForHost { driver: DriverSpec },
}

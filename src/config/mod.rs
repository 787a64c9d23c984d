//! Configuration: raw serde structs (unknown keys refused) are validated into a
//! frozen [`Config`] before any thread starts. Every error names its key.

mod hipache_json;
pub mod raw;
pub mod routes;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::http::error_page::ErrorPages;
use crate::http::Limits;
use crate::net::sockets::{Kind, SocketKey};
use crate::redis::url::RedisUrl;
pub use raw::RawConfig;

/// `server.route_cache` (README, "Route cache"; `routing::cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Every request asks Redis (Hipache).
    Off,
    /// A lookup is reused this long (`route_cache_ms`).
    Ttl(Duration),
    /// A lookup is reused until Redis reports a change to a key it read.
    Tracking,
}

/// A config problem, always naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the key, e.g. `server.retry_on_error` or `http.bind[1]`;
    /// empty for problems with the file as a whole.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.key.as_str() {
            "" => f.write_str(&self.message),
            key => write!(f, "{key}: {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The TLS loaders name the key they were given; validation reports it.
impl From<crate::tls::LoadError> for ConfigError {
    fn from(e: crate::tls::LoadError) -> Self {
        ConfigError::new(e.setting, e.message)
    }
}

impl From<crate::privileges::PrivilegeError> for ConfigError {
    fn from(e: crate::privileges::PrivilegeError) -> Self {
        ConfigError::new(e.setting, e.message)
    }
}

/// Where routes are read from and dead marks written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driver {
    /// First URL: the local replica, read per request.
    pub read: RedisUrl,
    /// Last URL: the master, where dead marks go.
    pub write: RedisUrl,
}

impl Driver {
    /// Key prefix, taken from the read URL (README, "Redis schema").
    pub fn prefix(&self) -> &str {
        &self.read.prefix
    }
}

/// A TLS listener and the rustls config every shard uses for it.
#[derive(Debug, Clone)]
pub struct HttpsListener {
    pub addr: SocketAddr,
    pub tls: std::sync::Arc<rustls::ServerConfig>,
    /// The file certificates by name (to know when Redis must be asked).
    pub names: crate::tls::SniResolver,
    pub preset: crate::tls::Preset,
}

/// `[healthcheck]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    pub interval: Duration,
    pub timeout: Duration,
    pub path: String,
    pub rise: u32,
    pub fall: u32,
    pub concurrency: usize,
}

/// `proxy_protocol` on listeners and `server.proxy_protocol_from`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyProtocol {
    pub listeners: Vec<SocketKey>,
    /// Empty: every peer of such a listener sends the header.
    pub from: Vec<crate::net::cidr::Cidr>,
}

impl ProxyProtocol {
    pub fn on(&self, key: SocketKey) -> bool {
        self.listeners.contains(&key)
    }

    /// A connection from `peer` on a PROXY protocol listener starts with the header.
    pub fn expected_from(&self, peer: std::net::IpAddr) -> bool {
        self.from.is_empty() || self.from.iter().any(|range| range.contains(peer))
    }
}

/// The validated, frozen configuration shared (behind an `Arc`) by every shard.
#[derive(Debug, Clone)]
pub struct Config {
    pub raw: RawConfig,
    pub driver: Driver,
    /// Lopache routes and the default destination (the top-level driver).
    pub routing: routes::RouteTable,
    /// Shards to run, resolved from `server.workers`.
    pub workers: usize,
    pub max_sockets: usize,
    /// Client idle timeout; `None` = never.
    pub tcp_timeout: Option<Duration>,
    pub dead_backend_ttl: Duration,
    pub retry_on_error: u32,
    pub http_keep_alive: bool,
    pub dead_backend_on_500: bool,
    pub error_pages: ErrorPages,
    pub debug: bool,
    /// `server.debug_headers`: answer `X-Debug` with `x-debug-*` headers.
    pub debug_headers: bool,
    /// `[healthcheck]`, when enabled.
    pub healthcheck: Option<Healthcheck>,
    /// `server.request_id_header`; `None` = no request IDs.
    pub request_id_header: Option<String>,
    /// `server.underscores_in_headers`.
    pub underscores_in_headers: bool,
    /// `server.request_buffer_bytes`: 0 = stream every body at once.
    pub request_buffer_bytes: usize,
    pub client_body_timeout: Duration,
    pub client_header_timeout: Duration,
    /// `server.response_buffer_bytes`.
    pub response_buffer_bytes: usize,
    /// `server.buffer_budget_mb` in bytes: request bodies buffered and
    /// responses read ahead, over a shard.
    pub buffer_budget: usize,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub redis_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    pub dns_ttl: Duration,
    /// How long a drain waits for connections to finish.
    pub drain_timeout: Duration,
    /// Tunnel idle timeout; `None` = never.
    pub websocket_idle_timeout: Option<Duration>,
    pub max_connections: usize,
    pub http_listeners: Vec<SocketAddr>,
    pub https_listeners: Vec<HttpsListener>,
    /// Which listeners read a PROXY protocol header first, and from whom.
    pub proxy_protocol: ProxyProtocol,
    /// `admin.bind`; `None` = no admin endpoint.
    pub admin_bind: Option<SocketAddr>,
    /// `server.access_log`.
    pub access_log: crate::observe::access_log::AccessLogTarget,
    /// `https.redis_certificates`, and how long a shard caches a lookup.
    pub redis_certificates: Option<Duration>,
    /// `https.redis_certificates_cache`: certificates a shard keeps.
    pub redis_certificates_cache: usize,
    /// How `https://` backends are verified.
    pub backend_tls: std::sync::Arc<rustls::ClientConfig>,
    pub limits: Limits,
    /// `user`/`group` resolved to ids: the worker drops to them after binding.
    pub run_as: Option<crate::privileges::RunAs>,
    /// `server.route_cache` (and `route_cache_ms`).
    pub route_cache: CacheMode,
    /// `server.memory_limit_mb` in bytes; `None` = no memory guard.
    pub memory_limit: Option<u64>,
    /// Keys of the drop-in JSON config that are not implemented, one warning each.
    pub warnings: Vec<String>,
    /// Every file the config names, as read when it was validated: the
    /// workers started for this config read these, not the disk.
    pub files: crate::files::Files,
}

impl Config {
    /// Every listening socket group this config needs, with how many sockets
    /// each holds: one per shard for the HTTP, then HTTPS listeners
    /// (SO_REUSEPORT spreads connections over them), one for admin.
    pub fn sockets(&self) -> Vec<(SocketKey, usize)> {
        let key = |kind, addr| (SocketKey { kind, addr }, self.workers);
        let mut keys: Vec<(SocketKey, usize)> = self
            .http_listeners
            .iter()
            .map(|&addr| key(Kind::Http, addr))
            .collect();
        keys.extend(
            self.https_listeners
                .iter()
                .map(|l| key(Kind::Https, l.addr)),
        );
        if let Some(addr) = self.admin_bind {
            keys.push((
                SocketKey {
                    kind: Kind::Admin,
                    addr,
                },
                1,
            ));
        }
        keys
    }
}

/// The config path when `--config` is not given: the first that exists of
/// `config.toml` and Hipache's `config/config.json`, or with
/// `SETTINGS_FLAVOR=<flavor>` of `config_<flavor>.toml`, `config_<flavor>.json`
/// and `config/config_<flavor>.json`. None existing: the first (whose read
/// error then names it).
pub fn default_path(flavor: Option<&str>) -> PathBuf {
    let candidates: Vec<String> = match flavor {
        Some(f) if !f.is_empty() => vec![
            format!("config_{f}.toml"),
            format!("config_{f}.json"),
            format!("config/config_{f}.json"),
        ],
        _ => vec!["config.toml".into(), "config/config.json".into()],
    };
    let found = candidates.iter().find(|c| Path::new(c).is_file());
    PathBuf::from(found.unwrap_or(&candidates[0]))
}

/// The text of the config file at `path` (the master reads it once and hands
/// the same text to every worker it starts).
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))
}

/// Reads and validates the file at `path` as the master does at start, on
/// `--dry` and on reload: [`from_text`], plus the checks that depend on
/// this process and machine (the access log's directory). Returns the config
/// and the text it came from.
pub fn load(path: &Path) -> Result<(Config, String), ConfigError> {
    let text = read(path)?;
    let config = from_text(path, &text)?;
    validate::access_log(&config.access_log)?;
    Ok((config, text))
}

/// Validates `text` as the file at `path` would be: JSON when the name ends
/// in `.json`, TOML otherwise, relative paths resolved against its
/// directory, the files it names read from disk.
pub fn from_text(path: &Path, text: &str) -> Result<Config, ConfigError> {
    from_text_with(path, text, crate::files::Files::from_disk())
}

/// [`from_text`], with the files it names read through `files` (a worker
/// passes what the master read when it validated the same text).
pub fn from_text_with(
    path: &Path,
    text: &str,
    files: crate::files::Files,
) -> Result<Config, ConfigError> {
    let base = path.parent().unwrap_or(Path::new("."));
    if path.extension().is_some_and(|e| e == "json") {
        let (raw, ignored) = hipache_json::translate(text)?;
        let mut config = validate::validate(raw, base, files)?;
        config.warnings.splice(0..0, ignored);
        return Ok(config);
    }
    validate::validate(parse_raw(text)?, base, files)
}

/// Parses and validates TOML text; relative paths in it resolve against `base`.
pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
    from_text_with(
        &base.join("config.toml"),
        text,
        crate::files::Files::from_disk(),
    )
}

/// Translates a Hipache/Lopache config.json and validates the result.
pub fn from_json(text: &str, base: &Path) -> Result<Config, ConfigError> {
    from_text_with(
        &base.join("config.json"),
        text,
        crate::files::Files::from_disk(),
    )
}

fn parse_raw(text: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().to_string();
        // Unknown keys: name the key itself, not its table.
        if let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next())
        {
            // The path already ends with the unknown key itself.
            let key = if path == "." || path.is_empty() {
                field.to_string()
            } else if path == field || path.ends_with(&format!(".{field}")) {
                path
            } else {
                format!("{path}.{field}")
            };
            return ConfigError::new(key, "unknown key");
        }
        let key = if path == "." { String::new() } else { path };
        // Enum variants are condition and destination names to an operator.
        if let Some(name) = message
            .strip_prefix("unknown variant `")
            .and_then(|m| m.split('`').next())
        {
            let kind = if key.contains("destination") {
                "destination"
            } else {
                "condition"
            };
            return ConfigError::new(key, format!("unknown {kind} {name:?}"));
        }
        let location = inner
            .span()
            .map(|s| format!(" (at byte {})", s.start))
            .unwrap_or_default();
        ConfigError::new(key, format!("{}{location}", plain_english(&message)))
    })
}

/// serde names Rust types (`expected u32`); operators want `expected an integer`.
fn plain_english(message: &str) -> String {
    let mut m = message.to_string();
    for ty in ["u8", "u16", "u32", "u64", "usize", "i32", "i64"] {
        m = m.replace(&format!("expected {ty}"), "expected an integer");
    }
    m.replace("expected a boolean", "expected true or false")
}

/// Masks passwords in the drivers of `path_matches` conditions, at any depth.
fn mask_condition(c: &mut raw::RawCondition, mask: &impl Fn(&str) -> String) {
    match c {
        raw::RawCondition::And(items) | raw::RawCondition::Or(items) => {
            items.iter_mut().for_each(|i| mask_condition(i, mask))
        }
        raw::RawCondition::Not(inner) => mask_condition(inner, mask),
        raw::RawCondition::PathMatches {
            driver: Some(d), ..
        } => *d = d.map(mask),
        _ => {}
    }
}

/// The effective config as TOML with secrets masked, for `--dry`.
pub fn render_effective(config: &Config) -> String {
    let mut shown = config.raw.clone();
    let mask = |u: &str| {
        RedisUrl::parse(u)
            .map(|p| p.masked())
            .unwrap_or_else(|_| u.to_string())
    };
    shown.driver = shown.driver.map(mask);
    for route in &mut shown.routes {
        let raw::RawDestination::RandomBackendForHost { driver } = &mut route.destination;
        *driver = driver.map(mask);
        mask_condition(&mut route.condition, &mask);
    }
    let body = toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
    let listeners: Vec<String> = config
        .http_listeners
        .iter()
        .map(|a| a.to_string())
        .collect();
    format!(
        "# effective lopache configuration ({} shards; http listeners: {})\n{body}",
        config.workers,
        listeners.join(", ")
    )
}

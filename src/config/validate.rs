//! Raw config to frozen [`Config`]: ranges, addresses, URLs and files are
//! checked here, once, with the failing key named.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use super::raw::{BindSpec, RawCondition, RawConfig, RawServer};
use super::routes::RouteTable;
use super::HttpsListener;
use super::{CacheMode, Config, ConfigError, Driver, ProxyProtocol};
use crate::files::Files;
use crate::http::error_page::ErrorPages;
use crate::http::{Limits, HARD_MAX_HEADERS, HARD_MAX_RESPONSE_HEADERS};
use crate::net::sockets::{Kind, SocketKey};
use crate::observe::access_log::AccessLogTarget;
use crate::redis::url::RedisUrl;
use crate::tls::{backend_client_config, load_certified_key, server_config, Preset, SniResolver};

/// `server.request_buffer_bytes` and `response_buffer_bytes` are memory per
/// request in flight: 64 MiB each is already generous (nginx buffers larger
/// bodies to disk instead).
const MAX_BUFFER_BYTES: u64 = 64 << 20;

/// A worker's resident set right after it starts is 15-25 MiB; a memory
/// limit below this replaces every worker as soon as it has served a while.
const MIN_MEMORY_LIMIT_MB: u64 = 64;

/// Every duration key is at most a year: longer means "never" in practice,
/// and a bound keeps deadline arithmetic far from overflowing.
const MAX_DURATION_SECS: u64 = 365 * 24 * 3600;

pub(super) fn validate(
    raw: RawConfig,
    base: &Path,
    mut files: Files,
) -> Result<Config, ConfigError> {
    let main_driver = driver(&raw.driver.urls(), "driver")?;
    let s = &raw.server;
    let workers = match s.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n if n > 1024 => return Err(ConfigError::new("server.workers", "at most 1024")),
        n => n as usize,
    };
    numeric_bounds(&raw)?;
    let error_pages = match s.static_dir.as_str() {
        "" => ErrorPages::builtin(),
        dir => ErrorPages::load(&mut files, &base.join(dir)).map_err(|e| {
            ConfigError::new("server.static_dir", format!("cannot read {dir}: {e}"))
        })?,
    };
    let limits = limits(&raw)?;
    let http_listeners = binds(&raw.http.bind, raw.http.port, "http")?;
    if http_listeners.is_empty() && raw.https.bind.is_empty() {
        return Err(ConfigError::new(
            "http.bind",
            "no listener: give at least one address",
        ));
    }
    let https_listeners = https(&raw, base, &http_listeners, &mut files)?;
    let proxy_protocol = proxy_protocol(&raw, &http_listeners, &https_listeners)?;
    let request_id_header = request_id_header(&s.request_id_header)?;
    let healthcheck = healthcheck(&raw.healthcheck, s.dead_backend_ttl.saturating_mul(1000))?;
    let backend_ca = (!s.backend_ca.is_empty()).then(|| base.join(&s.backend_ca));
    let backend_tls = backend_client_config(&mut files, backend_ca.as_deref())?;
    let admin_bind = match raw.admin.bind.as_str() {
        "" => None,
        bind => Some(bind.parse::<SocketAddr>().map_err(|_| {
            ConfigError::new("admin.bind", "expected an address like \"127.0.0.1:9090\"")
        })?),
    };
    for (i, route) in raw.routes.iter().enumerate() {
        condition(&route.condition, &format!("routes[{i}].condition"))?;
    }
    let routing = RouteTable::build(&main_driver, &raw.routes, |spec, key| {
        driver(&spec.urls(), key)
    })?;

    let run_as = crate::privileges::resolve(&raw.user, &raw.group)?;
    Ok(Config {
        driver: main_driver,
        routing,
        workers,
        max_sockets: s.max_sockets as usize,
        tcp_timeout: (s.tcp_timeout > 0).then(|| Duration::from_secs(s.tcp_timeout)),
        dead_backend_ttl: Duration::from_secs(s.dead_backend_ttl),
        retry_on_error: s.retry_on_error,
        http_keep_alive: s.http_keep_alive,
        dead_backend_on_500: s.dead_backend_on_500,
        error_pages,
        debug: s.debug,
        debug_headers: s.debug_headers,
        underscores_in_headers: s.underscores_in_headers,
        request_id_header,
        healthcheck,
        request_buffer_bytes: s.request_buffer_bytes as usize,
        client_body_timeout: Duration::from_secs(s.client_body_timeout),
        client_header_timeout: Duration::from_secs(s.client_header_timeout),
        response_buffer_bytes: s.response_buffer_bytes as usize,
        buffer_budget: (s.buffer_budget_mb as usize).saturating_mul(1 << 20),
        connect_timeout: Duration::from_secs(s.connect_timeout),
        response_timeout: Duration::from_secs(s.response_timeout),
        redis_timeout: Duration::from_millis(s.redis_timeout_ms),
        upstream_idle_timeout: Duration::from_secs(s.upstream_idle_timeout),
        dns_ttl: Duration::from_secs(s.dns_ttl),
        drain_timeout: Duration::from_secs(s.drain_timeout),
        websocket_idle_timeout: (s.websocket_idle_timeout > 0)
            .then(|| Duration::from_secs(s.websocket_idle_timeout)),
        max_connections: s.max_connections as usize,
        http_listeners,
        https_listeners,
        proxy_protocol,
        admin_bind,
        access_log: access_log_target(s)?,
        redis_certificates: raw
            .https
            .redis_certificates
            .then(|| Duration::from_secs(raw.https.redis_certificates_ttl)),
        redis_certificates_cache: raw.https.redis_certificates_cache as usize,
        backend_tls,
        limits,
        run_as,
        route_cache: route_cache_mode(s)?,
        memory_limit: (s.memory_limit_mb > 0).then(|| s.memory_limit_mb.saturating_mul(1 << 20)),
        warnings: memory_limit_warning(s.memory_limit_mb)
            .into_iter()
            .collect(),
        files,
        raw,
    })
}

/// The bounds of `[server]`'s numbers (and the HTTPS certificate cache's):
/// positive where zero would stop lopache working, durations at most a year,
/// buffers and counts within what a shard can hold.
fn numeric_bounds(raw: &RawConfig) -> Result<(), ConfigError> {
    let s = &raw.server;
    positive(s.max_sockets as u64, "server.max_sockets")?;
    positive(s.connect_timeout, "server.connect_timeout")?;
    positive(s.response_timeout, "server.response_timeout")?;
    positive(s.max_connections as u64, "server.max_connections")?;
    positive(s.redis_timeout_ms, "server.redis_timeout_ms")?;
    positive(s.client_body_timeout, "server.client_body_timeout")?;
    for (secs, key) in [
        (s.tcp_timeout, "server.tcp_timeout"),
        (s.dead_backend_ttl, "server.dead_backend_ttl"),
        (s.connect_timeout, "server.connect_timeout"),
        (s.response_timeout, "server.response_timeout"),
        (s.upstream_idle_timeout, "server.upstream_idle_timeout"),
        (s.dns_ttl, "server.dns_ttl"),
        (s.websocket_idle_timeout, "server.websocket_idle_timeout"),
        (s.drain_timeout, "server.drain_timeout"),
        (s.client_body_timeout, "server.client_body_timeout"),
        (s.client_header_timeout, "server.client_header_timeout"),
        (
            raw.https.redis_certificates_ttl,
            "https.redis_certificates_ttl",
        ),
        (s.redis_timeout_ms / 1000, "server.redis_timeout_ms"),
        (s.route_cache_ms / 1000, "server.route_cache_ms"),
    ] {
        if secs > MAX_DURATION_SECS {
            return Err(ConfigError::new(
                key,
                format!("at most {MAX_DURATION_SECS} seconds (365 days)"),
            ));
        }
    }
    positive(s.client_header_timeout, "server.client_header_timeout")?;
    positive(
        raw.https.redis_certificates_cache.into(),
        "https.redis_certificates_cache",
    )?;
    for (value, key) in [
        (s.request_buffer_bytes, "server.request_buffer_bytes"),
        (s.response_buffer_bytes, "server.response_buffer_bytes"),
    ] {
        if value > MAX_BUFFER_BYTES {
            return Err(ConfigError::new(
                key,
                format!("at most {MAX_BUFFER_BYTES} (a buffer per request in flight)"),
            ));
        }
    }
    if s.buffer_budget_mb > 1 << 20 {
        return Err(ConfigError::new(
            "server.buffer_budget_mb",
            "at most 1048576",
        ));
    }
    if s.retry_on_error > 100 {
        return Err(ConfigError::new("server.retry_on_error", "at most 100"));
    }
    Ok(())
}

/// TLS listeners: each with its default certificate (its own `cert`/`key`,
/// else the section's) and the certificates directory for SNI.
fn https(
    raw: &RawConfig,
    base: &Path,
    http: &[SocketAddr],
    files: &mut Files,
) -> Result<Vec<HttpsListener>, ConfigError> {
    let h = &raw.https;
    let preset = Preset::parse(&h.preset).ok_or_else(|| {
        ConfigError::new("https.preset", "expected \"modern\" or \"intermediate\"")
    })?;
    if h.bind.is_empty() {
        return Ok(Vec::new());
    }
    let load = |files: &mut Files, cert: &str, key: &str, cert_key: &str, key_key: &str| match (
        cert.is_empty(),
        key.is_empty(),
    ) {
        (true, true) => Ok(None),
        (false, false) => {
            load_certified_key(files, &base.join(cert), &base.join(key), cert_key, key_key)
                .map(Some)
                .map_err(ConfigError::from)
        }
        (true, false) => Err(ConfigError::new(cert_key, format!("needed with {key_key}"))),
        (false, true) => Err(ConfigError::new(key_key, format!("needed with {cert_key}"))),
    };
    let chain: Vec<std::path::PathBuf> = h.chain.iter().map(|c| base.join(c)).collect();
    if !chain.is_empty() && (h.cert.is_empty() || h.key.is_empty()) {
        return Err(ConfigError::new(
            "https.chain",
            "needs https.cert and https.key",
        ));
    }
    let section_default = match (h.cert.is_empty(), h.key.is_empty()) {
        (false, false) => Some(crate::tls::load_certified_key_with_chain(
            files,
            &base.join(&h.cert),
            &base.join(&h.key),
            &chain,
            "https.cert",
            "https.key",
        )?),
        _ => load(files, &h.cert, &h.key, "https.cert", "https.key")?,
    };
    let by_name = match h.certificates_dir.as_str() {
        "" => SniResolver::default(),
        dir => SniResolver::load_dir(files, &base.join(dir))?,
    };
    let mut out: Vec<HttpsListener> = Vec::new();
    for (i, b) in h.bind.iter().enumerate() {
        let key = format!("https.bind[{i}]");
        let addr = bind_addr(b, h.port, &key)?;
        // Port 0 asks for any free port: two of those never collide.
        if addr.port() != 0 && (http.contains(&addr) || out.iter().any(|l| l.addr == addr)) {
            return Err(ConfigError::new(key, format!("{addr} is listed twice")));
        }
        let own = match b {
            BindSpec::Table(t) => load(
                files,
                t.cert.as_deref().unwrap_or(""),
                t.key.as_deref().unwrap_or(""),
                &format!("{key}.cert"),
                &format!("{key}.key"),
            )?,
            BindSpec::Address(_) => None,
        };
        let default = own.or_else(|| section_default.clone());
        if default.is_none() && h.certificates_dir.is_empty() && !h.redis_certificates {
            return Err(ConfigError::new(
                "https.cert",
                format!("{key} needs a certificate: set https.cert and https.key, or https.certificates_dir"),
            ));
        }
        let tls = server_config(by_name.clone().with_default(default), preset)?;
        out.push(HttpsListener {
            addr,
            tls,
            names: by_name.clone(),
            preset,
        });
    }
    Ok(out)
}

/// A limit a worker cannot stay under is allowed (tests use one to make the
/// guard act), but said so at start.
fn memory_limit_warning(mb: u64) -> Option<String> {
    (mb > 0 && mb < MIN_MEMORY_LIMIT_MB).then(|| {
        format!(
            "server.memory_limit_mb = {mb} is below what a worker needs ({MIN_MEMORY_LIMIT_MB} MiB at the least): \
             every worker will be replaced soon after it starts"
        )
    })
}

fn positive(v: u64, key: &str) -> Result<(), ConfigError> {
    if v == 0 {
        return Err(ConfigError::new(key, "must be greater than 0"));
    }
    Ok(())
}

fn driver(urls: &[&str], key: &str) -> Result<Driver, ConfigError> {
    let (Some(first), Some(last)) = (urls.first(), urls.last()) else {
        return Err(ConfigError::new(key, "needs at least one Redis URL"));
    };
    let parse =
        |u: &str, k: String| RedisUrl::parse(u).map_err(|e| ConfigError::new(k, e.to_string()));
    let many = urls.len() > 1;
    let read = parse(
        first,
        if many {
            format!("{key}[0]")
        } else {
            key.to_string()
        },
    )?;
    let write_key = if many {
        format!("{key}[{}]", urls.len() - 1)
    } else {
        key.to_string()
    };
    let write = parse(last, write_key.clone())?;
    if let crate::redis::url::Endpoint::Sentinel(set) = &write.endpoint {
        if set.replica {
            return Err(ConfigError::new(
                write_key,
                "?role=replica cannot take dead marks: it belongs on the read side, the first of two URLs",
            ));
        }
    }
    Ok(Driver { read, write })
}

fn limits(raw: &RawConfig) -> Result<Limits, ConfigError> {
    let l = &raw.limits;
    let check = |v: usize, min: usize, max: usize, key: &str| {
        if v < min || v > max {
            Err(ConfigError::new(
                format!("limits.{key}"),
                format!("must be between {min} and {max}"),
            ))
        } else {
            Ok(())
        }
    };
    check(l.request_head_bytes, 1024, 1 << 20, "request_head_bytes")?;
    check(l.header_count, 8, HARD_MAX_HEADERS - 1, "header_count")?;
    check(l.uri_bytes, 256, 1 << 20, "uri_bytes")?;
    check(l.chunk_line_bytes, 64, 1 << 20, "chunk_line_bytes")?;
    check(l.trailer_bytes, 0, 1 << 20, "trailer_bytes")?;
    check(l.response_head_bytes, 1024, 1 << 20, "response_head_bytes")?;
    check(
        l.response_header_count,
        8,
        HARD_MAX_RESPONSE_HEADERS,
        "response_header_count",
    )?;
    check(l.path_segments, 1, 1024, "path_segments")?;
    Ok(*l)
}

fn binds(
    list: &[BindSpec],
    default_port: u16,
    section: &str,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for (i, b) in list.iter().enumerate() {
        let key = format!("{section}.bind[{i}]");
        if let BindSpec::Table(t) = b {
            if t.cert.is_some() || t.key.is_some() {
                return Err(ConfigError::new(
                    key,
                    "cert and key belong to https.bind entries",
                ));
            }
        }
        let addr = bind_addr(b, default_port, &key)?;
        if addr.port() != 0 && out.contains(&addr) {
            return Err(ConfigError::new(key, format!("{addr} is listed twice")));
        }
        out.push(addr);
    }
    Ok(out)
}

/// `[healthcheck]`: `None` when off; the path an origin-form target.
fn healthcheck(
    h: &super::raw::RawHealthcheck,
    ttl_ms: u64,
) -> Result<Option<super::Healthcheck>, ConfigError> {
    if !h.enabled {
        return Ok(None);
    }
    if !(100..=MAX_DURATION_SECS * 1000).contains(&h.interval_ms) {
        return Err(ConfigError::new("healthcheck.interval_ms", "at least 100"));
    }
    if h.interval_ms >= ttl_ms {
        return Err(ConfigError::new(
            "healthcheck.interval_ms",
            "must be below server.dead_backend_ttl (a mark is refreshed once per interval)",
        ));
    }
    if h.timeout_ms == 0 || h.timeout_ms > h.interval_ms {
        return Err(ConfigError::new(
            "healthcheck.timeout_ms",
            "between 1 and healthcheck.interval_ms",
        ));
    }
    if !crate::http::is_origin_path(&h.path) {
        return Err(ConfigError::new(
            "healthcheck.path",
            "expected a path like \"/health\" (visible ASCII, starting with /)",
        ));
    }
    for (n, key) in [(h.rise, "healthcheck.rise"), (h.fall, "healthcheck.fall")] {
        if !(1..=100).contains(&n) {
            return Err(ConfigError::new(key, "between 1 and 100"));
        }
    }
    if !(1..=10_000).contains(&h.concurrency) {
        return Err(ConfigError::new(
            "healthcheck.concurrency",
            "between 1 and 10000",
        ));
    }
    Ok(Some(super::Healthcheck {
        interval: Duration::from_millis(h.interval_ms),
        timeout: Duration::from_millis(h.timeout_ms),
        path: h.path.clone(),
        rise: h.rise,
        fall: h.fall,
        concurrency: h.concurrency as usize,
    }))
}

/// `server.route_cache`, with `route_cache_ms` above 0 selecting the TTL
/// mode (as it did before there were modes).
fn route_cache_mode(s: &RawServer) -> Result<CacheMode, ConfigError> {
    let ttl = Duration::from_millis(s.route_cache_ms);
    match (s.route_cache.as_str(), s.route_cache_ms) {
        ("tracking" | "ttl", 1..) => Ok(CacheMode::Ttl(ttl)),
        ("tracking", 0) => Ok(CacheMode::Tracking),
        ("off", 0) => Ok(CacheMode::Off),
        ("ttl", 0) => Err(ConfigError::new(
            "server.route_cache_ms",
            "the \"ttl\" route cache needs a time above 0",
        )),
        ("off", _) => Err(ConfigError::new(
            "server.route_cache_ms",
            "is the \"ttl\" route cache's time, but server.route_cache is \"off\"",
        )),
        (other, _) => Err(ConfigError::new(
            "server.route_cache",
            format!("{other:?}: expected \"tracking\", \"ttl\" or \"off\""),
        )),
    }
}

/// `server.access_log`: syslog (with its facility and tag), or a path,
/// `stdout` or `none`.
fn access_log_target(s: &RawServer) -> Result<AccessLogTarget, ConfigError> {
    use crate::observe::syslog::{self, SyslogAddr, SyslogTarget};
    let Some(addr) = SyslogAddr::parse(&s.access_log) else {
        return Ok(AccessLogTarget::parse(&s.access_log));
    };
    let addr = addr.map_err(|e| ConfigError::new("server.access_log", e))?;
    let facility = syslog::facility(&s.syslog_facility).ok_or_else(|| {
        ConfigError::new(
            "server.syslog_facility",
            "expected a facility like \"local0\" or \"daemon\"",
        )
    })?;
    if !syslog::valid_tag(&s.syslog_tag) {
        return Err(ConfigError::new(
            "server.syslog_tag",
            "expected 1 to 48 visible ASCII characters",
        ));
    }
    Ok(AccessLogTarget::Syslog(SyslogTarget {
        addr,
        facility,
        tag: s.syslog_tag.clone(),
    }))
}

/// `server.request_id_header`: a header name lopache does not already
/// manage (framing, routing, forwarding and hop-by-hop fields).
fn request_id_header(name: &str) -> Result<Option<String>, ConfigError> {
    use crate::http::headers::{is_hop_by_hop, is_protected, is_token};
    let key = "server.request_id_header";
    if name.is_empty() {
        return Ok(None);
    }
    if name.len() > 64 || !is_token(name.as_bytes()) {
        return Err(ConfigError::new(
            key,
            "expected a header name like \"X-Request-Id\"",
        ));
    }
    let bytes = name.as_bytes();
    // Fields with a meaning of their own: an ID put there (or the client's
    // and backend's copies removed) would break them.
    const MEANINGFUL: [&str; 12] = [
        "expect",
        "cookie",
        "set-cookie",
        "authorization",
        "proxy-authorization",
        "www-authenticate",
        "proxy-authenticate",
        "location",
        "content-type",
        "content-encoding",
        "content-range",
        "range",
    ];
    let meaningful = MEANINGFUL.iter().any(|m| m.eq_ignore_ascii_case(name));
    if is_hop_by_hop(bytes) || is_protected(bytes) || meaningful {
        return Err(ConfigError::new(
            key,
            format!("{name} is a header lopache manages itself"),
        ));
    }
    Ok(Some(name.to_string()))
}

/// The listeners that read a PROXY protocol header: a bind table's own
/// `proxy_protocol`, else its section's; and the peers that send it.
fn proxy_protocol(
    raw: &RawConfig,
    http: &[SocketAddr],
    https: &[HttpsListener],
) -> Result<ProxyProtocol, ConfigError> {
    let wanted = |bind: &BindSpec, section: bool| match bind {
        BindSpec::Table(t) => t.proxy_protocol.unwrap_or(section),
        BindSpec::Address(_) => section,
    };
    let mut listeners = Vec::new();
    for (bind, &addr) in raw.http.bind.iter().zip(http) {
        if wanted(bind, raw.http.proxy_protocol) {
            listeners.push(SocketKey {
                kind: Kind::Http,
                addr,
            });
        }
    }
    for (bind, l) in raw.https.bind.iter().zip(https) {
        if wanted(bind, raw.https.proxy_protocol) {
            listeners.push(SocketKey {
                kind: Kind::Https,
                addr: l.addr,
            });
        }
    }
    let mut from = Vec::new();
    for (i, range) in raw.server.proxy_protocol_from.iter().enumerate() {
        let key = format!("server.proxy_protocol_from[{i}]");
        from.push(
            range
                .parse()
                .map_err(|e: String| ConfigError::new(key, e))?,
        );
    }
    if !from.is_empty() && listeners.is_empty() {
        return Err(ConfigError::new(
            "server.proxy_protocol_from",
            "no listener has proxy_protocol = true",
        ));
    }
    Ok(ProxyProtocol { listeners, from })
}

/// Accepts `1.2.3.4`, `::1`, `[::1]`, `host:port`, `[::1]:80`, `localhost`, or a table.
fn bind_addr(b: &BindSpec, default_port: u16, key: &str) -> Result<SocketAddr, ConfigError> {
    let (address, port) = match b {
        BindSpec::Address(a) => (a.as_str(), None),
        BindSpec::Table(t) => (t.address.as_str(), t.port),
    };
    let port = port.unwrap_or(default_port);
    if let Ok(sa) = address.parse::<SocketAddr>() {
        return Ok(sa);
    }
    let bare = address.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let resolved = if address.contains(':') {
        address.to_socket_addrs()
    } else {
        (address, port).to_socket_addrs()
    };
    resolved.ok().and_then(|mut a| a.next()).ok_or_else(|| {
        ConfigError::new(
            key,
            format!("cannot resolve {address:?} to a local address"),
        )
    })
}

fn condition(c: &RawCondition, key: &str) -> Result<(), ConfigError> {
    match c {
        RawCondition::And(list) | RawCondition::Or(list) => {
            let name = if matches!(c, RawCondition::And(_)) {
                "and"
            } else {
                "or"
            };
            if list.is_empty() {
                return Err(ConfigError::new(
                    format!("{key}.{name}"),
                    "needs at least one condition",
                ));
            }
            for (i, inner) in list.iter().enumerate() {
                condition(inner, &format!("{key}.{name}[{i}]"))?;
            }
            Ok(())
        }
        RawCondition::Not(inner) => condition(inner, &format!("{key}.not")),
        RawCondition::PathPrefix(p) if !p.starts_with('/') => Err(ConfigError::new(
            format!("{key}.path_prefix"),
            "must start with /",
        )),
        RawCondition::IncludedInSegment { max_segment_id, .. } if *max_segment_id > 99 => {
            Err(ConfigError::new(
                format!("{key}.included_in_segment.max_segment_id"),
                "must be between 0 and 99",
            ))
        }
        _ => Ok(()),
    }
}

/// `server.access_log`: a path must be one this process can write, in a
/// directory that exists: lopache creates no directories (as nginx), so a
/// typo is an error at start, on `--dry` and on reload, not a new directory.
pub fn access_log(setting: &AccessLogTarget) -> Result<(), ConfigError> {
    let AccessLogTarget::File(path) = setting else {
        return Ok(());
    };
    let key = "server.access_log";
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(ConfigError::new(
            key,
            format!(
                "directory {} does not exist (lopache creates none; create it, or use \"stdout\" or \"none\")",
                dir.display()
            ),
        ));
    }
    let (target, mode) = if path.exists() {
        (path.as_path(), libc::W_OK)
    } else {
        (dir, libc::W_OK | libc::X_OK)
    };
    let writable = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
        // SAFETY: access reads a NUL-terminated path that outlives the call.
        .is_ok_and(|c| unsafe { libc::access(c.as_ptr(), mode) } == 0);
    if !writable {
        return Err(ConfigError::new(
            key,
            format!("{} is not writable by this user", target.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::from_toml;
    use std::path::Path;

    fn err(text: &str) -> String {
        from_toml(text, Path::new(".")).unwrap_err().to_string()
    }

    #[test]
    fn empty_file_is_valid_with_spec_defaults() {
        let c = from_toml("", Path::new(".")).unwrap();
        assert_eq!(c.max_sockets, 100);
        assert_eq!(c.retry_on_error, 3);
        assert_eq!(c.http_listeners, vec!["127.0.0.1:80".parse().unwrap()]);
        assert_eq!(c.driver.read.masked(), "redis://127.0.0.1:6379/0");
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err("[server]\nretry_on_error = \"three\"").starts_with("server.retry_on_error: "));
        assert!(err("[server]\nretry_on_error = \"three\"").contains("expected an integer"));
        assert_eq!(err("[server]\nretries = 1"), "server.retries: unknown key");
        assert_eq!(err("colour = 1"), "colour: unknown key");
        assert!(err("driver = \"http://x\"").starts_with("driver: "));
        assert!(err("driver = [\"redis:\", \"nope\"]").starts_with("driver[1]: "));
        assert!(err("[http]\nbind = [\"127.0.0.1\", 5]").starts_with("http.bind[1]: "));
        assert!(err("[http]\nport = 70000").starts_with("http.port: "));
        assert!(err("[server]\nmax_sockets = 0").starts_with("server.max_sockets: "));
        assert!(err("[https]\npreset = \"old\"").starts_with("https.preset: "));
        assert!(err("[server]\nstatic_dir = \"/nonexistent/x\"").starts_with("server.static_dir: "));
        assert!(err("[limits]\nheader_count = 1").starts_with("limits.header_count: "));
        let replica = "redis-sentinel://127.0.0.1:1/m?role=replica";
        assert!(err(&format!("driver = {replica:?}")).starts_with("driver: ?role=replica"));
        assert!(err(&format!("driver = [\"redis:\", {replica:?}]")).starts_with("driver[1]: "));
        assert!(from_toml(
            &format!("driver = [{replica:?}, \"redis:\"]"),
            Path::new(".")
        )
        .is_ok());
        for name in [
            "X Request",
            "Host",
            "x-forwarded-for",
            "Connection",
            "Content-Length",
            "Set-Cookie",
            "Authorization",
            "é",
        ] {
            let e = err(&format!("[server]\nrequest_id_header = {name:?}"));
            assert!(e.starts_with("server.request_id_header: "), "{name}: {e}");
        }
        for (lines, key) in [
            (
                "access_log = \"syslog:tcp://127.0.0.1:514\"",
                "server.access_log: ",
            ),
            (
                "access_log = \"syslog\"\nsyslog_facility = \"local9\"",
                "server.syslog_facility: ",
            ),
            (
                "access_log = \"syslog\"\nsyslog_tag = \"two words\"",
                "server.syslog_tag: ",
            ),
        ] {
            let e = err(&format!("[server]\n{lines}"));
            assert!(e.starts_with(key), "{lines}: {e}");
        }
        let c = from_toml(
            "[server]\nrequest_id_header = \"X-Request-Id\"",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.request_id_header.as_deref(), Some("X-Request-Id"));
    }

    #[test]
    fn route_cache_modes() {
        use crate::config::CacheMode;
        use std::time::Duration;
        let mode = |lines: &str| {
            from_toml(&format!("[server]\n{lines}"), Path::new("."))
                .map(|c| c.route_cache)
                .map_err(|e| e.to_string())
        };
        assert_eq!(mode(""), Ok(CacheMode::Tracking));
        assert_eq!(mode("route_cache = \"off\""), Ok(CacheMode::Off));
        let ttl = Ok(CacheMode::Ttl(Duration::from_millis(500)));
        assert_eq!(mode("route_cache_ms = 500"), ttl);
        assert_eq!(mode("route_cache = \"ttl\"\nroute_cache_ms = 500"), ttl);
        for (lines, key) in [
            ("route_cache = \"ttl\"", "server.route_cache_ms: "),
            (
                "route_cache = \"off\"\nroute_cache_ms = 5",
                "server.route_cache_ms: ",
            ),
            ("route_cache = \"lru\"", "server.route_cache: "),
        ] {
            let e = mode(lines).unwrap_err();
            assert!(e.starts_with(key), "{lines}: {e}");
        }
    }

    #[test]
    fn bind_forms() {
        let c = from_toml(
            "[http]\nport = 8080\nbind = [\"127.0.0.1\", \"::1\", { address = \"127.0.0.2\", port = 81 }, \"127.0.0.3:82\"]",
            Path::new("."),
        )
        .unwrap();
        let want: Vec<std::net::SocketAddr> = [
            "127.0.0.1:8080",
            "[::1]:8080",
            "127.0.0.2:81",
            "127.0.0.3:82",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(c.http_listeners, want);
    }

    #[test]
    fn routes_are_validated_and_warned_about() {
        let ok = "[[routes]]\ncondition = { and = [ { path_prefix = \"/api/\" }, \
                  { included_in_segment = { cookie = \"s\", max_segment_id = 50 } } ] }\n\
                  destination = { random_backend_for_host = { driver = \"redis://127.0.0.1:6379#rollout:\" } }";
        let c = from_toml(ok, Path::new(".")).unwrap();
        assert!(c.warnings.is_empty());
        // The rollout keyspace is on the same server as the default: one client.
        assert_eq!(c.routing.servers.len(), 1);
        assert_eq!(c.routing.routes[0].destination.prefix, "rollout:");
        let bad = ok.replace("50", "100");
        assert_eq!(
            err(&bad),
            "routes[0].condition.and[1].included_in_segment.max_segment_id: must be between 0 and 99"
        );
        let bad = ok.replace("and = [", "and = [ { nope = 1 }, ");
        assert!(
            err(&bad).starts_with("routes[0].condition"),
            "{}",
            err(&bad)
        );
    }
}

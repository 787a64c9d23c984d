//! One shard's context: what every connection task on a shard may use (its
//! config, Redis connections, upstream pool, resolver, caches, drain gate and
//! idle timers, counters). Nothing in here is shared with other shards, so
//! nothing needs a lock. It sits below `proxy` and `runtime`: the runtime
//! builds it, complete, and the proxy reads it.

pub mod drain;
pub mod idle;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::io::budget::Budget;
use crate::log_warn;
use crate::observe::access_log::AccessLog;
use crate::observe::log::{self, RateLimit};
use crate::observe::metrics::{self, ShardMetrics};
use crate::redis::RedisClient;
use crate::routing::cache::RouteCache;
use crate::routing::dead::DeadBackends;
use crate::tls::redis_certs::RedisCertCache;
use crate::upstream::dns::Resolver;
use crate::upstream::UpstreamPool;
use drain::Drain;
use idle::IdleTimers;

/// Which monoio driver the shards run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    IoUring,
    Epoll,
}

impl DriverKind {
    /// monoio's own detection: the needed io_uring opcodes, unless
    /// `MONOIO_FORCE_LEGACY_DRIVER` asks for epoll.
    pub fn probe() -> DriverKind {
        if monoio::utils::detect_uring() {
            DriverKind::IoUring
        } else {
            DriverKind::Epoll
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DriverKind::IoUring => "io_uring",
            DriverKind::Epoll => "epoll",
        }
    }
}

/// How often a rate-limited warning may be logged per shard.
const WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// Everything a connection task on this shard may use.
pub struct Shard {
    pub id: usize,
    pub config: Arc<Config>,
    /// One client per distinct Redis server of the route table
    /// (`config.routing.servers`), shared by every keyspace on that server.
    pub redis: Vec<RedisClient>,
    pub dead: DeadBackends,
    pub pool: UpstreamPool,
    pub dns: Resolver,
    /// TLS for `https://` backends (verification per `config.backend_tls`).
    pub backend_tls: monoio_rustls::TlsConnector,
    /// Certificates found in Redis, by SNI name.
    pub tls_certs: RedisCertCache,
    /// Lookups reused per `server.route_cache`.
    pub route_cache: RouteCache,
    /// Fires once, when the shard starts draining.
    pub drain: Drain,
    /// Deadlines of connections waiting for their next request.
    pub idle: IdleTimers,
    /// This shard's access log buffer, unless `server.access_log = "none"`.
    pub access_log: Option<AccessLog>,
    /// This shard's counters, read by the admin endpoint.
    pub metrics: Arc<ShardMetrics>,
    /// Bytes this shard may still hold for slow peers, request bodies and
    /// responses together (`server.buffer_budget_mb`).
    pub buffer_budget: Budget,
    /// Emptied response-head buffers, for the next responses.
    pub head_buffers: crate::io::spare::SpareBuffers,
    /// Generated request IDs (`server.request_id_header`).
    pub request_ids: crate::observe::request_id::RandomIds,
    driver: DriverKind,
    /// Rate limit for the warning about lopache's own shortages.
    local_error_log: RateLimit,
    /// Rate limit for the warning about unusable backend URLs in Redis.
    bad_url_log: RateLimit,
}

impl Shard {
    pub fn new(
        id: usize,
        config: Arc<Config>,
        metrics: Arc<ShardMetrics>,
        driver: DriverKind,
        access_log: Option<AccessLog>,
    ) -> Shard {
        let redis =
            RedisClient::for_servers(&config.routing.servers, config.redis_timeout, &metrics);
        Shard {
            id,
            redis,
            dead: DeadBackends::default(),
            pool: UpstreamPool::new(config.max_sockets, config.upstream_idle_timeout),
            dns: Resolver::new(config.dns_ttl),
            backend_tls: monoio_rustls::TlsConnector::from(config.backend_tls.clone()),
            tls_certs: RedisCertCache::new(
                config.redis_certificates.unwrap_or_default(),
                config.redis_certificates_cache,
            ),
            route_cache: RouteCache::new(config.route_cache, &config.routing),
            drain: Drain::default(),
            idle: IdleTimers::default(),
            access_log,
            metrics,
            local_error_log: RateLimit::default(),
            bad_url_log: RateLimit::default(),
            buffer_budget: std::rc::Rc::new(std::cell::Cell::new(config.buffer_budget)),
            head_buffers: Default::default(),
            request_ids: Default::default(),
            driver,
            config,
        }
    }

    /// io_uring: a read on an idle socket waits in the kernel (on epoll it
    /// would fail with EAGAIN first), so idle connections read directly.
    pub fn read_waits_in_kernel(&self) -> bool {
        self.driver == DriverKind::IoUring
    }

    /// Tunnels between two plain sockets may splice (io_uring's splice op).
    pub fn can_splice(&self) -> bool {
        self.driver == DriverKind::IoUring
    }

    /// The Redis client that routes (and certificates) are read from by default.
    pub fn default_redis(&self) -> &RedisClient {
        &self.redis[self.config.routing.default.read]
    }

    /// Where the TLS handshake looks up names that have no certificate file.
    pub fn redis_certs(&self) -> crate::tls::accept::RedisCerts<'_> {
        crate::tls::accept::RedisCerts {
            redis: self.default_redis(),
            cache: &self.tls_certs,
        }
    }

    /// lopache could not open a socket for want of its own resources:
    /// counted, and logged at most once a second per shard.
    pub fn note_local_shortage(&self, addr: &dyn std::fmt::Display, e: &std::io::Error) {
        metrics::add(&self.metrics.local_errors, 1);
        if let Some(suppressed) = self.local_error_log.allow(WARNING_INTERVAL) {
            log_warn!(
                "cannot open a connection to {addr}: {e} (lopache's own limit, answered 503; \
                 {suppressed} more since the last warning)"
            );
        }
    }

    /// A backend URL in Redis that cannot be used: logged at most once a
    /// second per shard (it is routing data, repeated on every request).
    pub fn warn_bad_backend_url(&self, host: &str, e: &dyn std::fmt::Display) {
        if let Some(suppressed) = self.bad_url_log.allow(WARNING_INTERVAL) {
            log_warn!(
                "{host}: {} ({suppressed} more since the last warning)",
                log::truncated(&e.to_string(), 200)
            );
        }
    }
}

/// What unit tests of the layers above need: a shard on the default config
/// and a connected socket to run a connection's code on.
#[cfg(test)]
pub(crate) mod testing {
    use std::future::Future;
    use std::net::SocketAddr;
    use std::rc::Rc;
    use std::sync::Arc;

    use monoio::net::TcpStream;

    use super::{DriverKind, Shard};

    /// A shard on the default config, with no access log.
    pub fn shard() -> Shard {
        let config = crate::config::from_toml("", std::path::Path::new(".")).unwrap();
        Shard::new(
            0,
            Arc::new(config),
            Arc::default(),
            DriverKind::probe(),
            None,
        )
    }

    /// Runs `body` on a monoio runtime with a shard and a client socket
    /// connected to a loopback listener (at the address given).
    pub fn with_connection<T, F: Future<Output = T>>(
        body: impl FnOnce(Rc<Shard>, TcpStream, SocketAddr) -> F,
    ) -> T {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async move {
            let stream = TcpStream::connect_addr(addr).await.unwrap();
            body(Rc::new(shard()), stream, addr).await
        })
    }
}

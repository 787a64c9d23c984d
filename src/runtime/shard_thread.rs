//! The shard threads: each pinned to a core, with its own monoio runtime,
//! listeners and background tasks (housekeeping, access log flushes, the
//! drain watch). The `Shard` they build lives in `crate::shard`.

use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::Arc;

use local_sync::semaphore::Semaphore;
use monoio::net::TcpListener;

use super::accept::{self, accept_loop};
use super::signals::Stop;
use crate::config::{CacheMode, Config, HttpsListener};
use crate::observe::access_log::{self, AccessLog};
use crate::observe::log;
use crate::observe::metrics::{self, ShardMetrics};
use crate::shard::drain;
use crate::shard::{DriverKind, Shard};
use crate::tls::accept::TlsListener;
use crate::{log_info, log_warn};

type Ready = Sender<(usize, Result<(), String>)>;

/// Hands buffered access log lines to the writer thread regularly.
async fn flush_access_log(shard: Rc<Shard>) {
    loop {
        monoio::time::sleep(access_log::FLUSH_INTERVAL).await;
        if let Some(log) = &shard.access_log {
            log.flush();
        }
    }
}

/// How often a shard asks the allocator to return freed pages.
const MEMORY_TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// mimalloc returns freed pages to the OS only during later allocator
/// activity, so after a burst an idle shard would keep its peak memory
/// resident. Collecting once a second costs nothing measurable and keeps
/// idle keep-alive connections cheap.
/// The same tick sweeps every per-backend and per-host map, so that what a
/// backend or host left behind (an idle connection the backend closed, a
/// name, a flag, a cached lookup) goes within a second of expiring, without
/// waiting for traffic to the same backend; and it refreshes the gauges.
async fn housekeeping(shard: Rc<Shard>) {
    use std::sync::atomic::Ordering::Relaxed;
    loop {
        monoio::time::sleep(MEMORY_TRIM_INTERVAL).await;
        let closed = shard.pool.sweep();
        let m = &shard.metrics;
        metrics::add(&m.upstream_idle_closed, closed as u64);
        m.pool_idle.store(shard.pool.idle_count() as u64, Relaxed);
        let sizes = [
            shard.pool.key_count(),
            shard.dns.sweep(),
            shard.route_cache.sweep(),
            shard.dead.sweep(),
            shard.tls_certs.len(),
        ];
        for (gauge, n) in m.map_sizes.iter().zip(sizes) {
            gauge.store(n as u64, Relaxed);
        }
        // SAFETY: mi_collect only walks this thread's mimalloc heap and
        // purges pages it no longer uses; it takes no pointers from us.
        unsafe { libmimalloc_sys::mi_collect(true) };
    }
}

/// With the route cache on: subscribe to the `dead` channel on every Redis
/// routes are read from, and forget a host's cached lookup whenever a proxy
/// announces one of its backends dead (everything when the message names
/// no host, or the subscription was down and may have missed one).
fn listen_for_dead_marks(shard: &Rc<Shard>) {
    use crate::redis::subscriber::Event;
    for server in shard.config.routing.read_servers() {
        let url = shard.config.routing.servers[server].clone();
        let shard = shard.clone();
        let timeout = shard.config.redis_timeout;
        monoio::spawn(async move {
            crate::redis::subscriber::subscribe(url, b"dead", timeout, |event| {
                // Hipache's message: `<host>;<backend url>;<index>;<count>`.
                let host = match &event {
                    Event::Message(m) => m.iter().position(|&b| b == b';').map(|end| &m[..end]),
                    _ => None,
                };
                match host.and_then(|h| std::str::from_utf8(h).ok()) {
                    Some(host) => shard.route_cache.forget(host),
                    None => shard.route_cache.clear(),
                }
            })
            .await
        });
    }
}

/// With `route_cache = "tracking"`: one tracking session per server routes
/// or `path_matches` sets are read from, for the keys lookups and path
/// conditions read there (and the certificates on the default server),
/// whose reports drop what they invalidate.
fn track_route_keys(shard: &Rc<Shard>) {
    use crate::redis::tracking::{self, Event};
    let table = &shard.config.routing;
    let certificates_on = shard.config.redis_certificates.is_some();
    // The `path_matches` sets the cache keeps: (key prefix, server).
    let path_sets: Vec<(&str, usize)> = table
        .routes
        .iter()
        .flat_map(|r| crate::routing::rules::path_queries(&r.condition))
        .collect();
    let mut servers = table.read_servers();
    servers.extend(path_sets.iter().map(|&(_, server)| server));
    servers.sort_unstable();
    servers.dedup();
    for server in servers {
        let mut prefixes: Vec<String> = table
            .destinations()
            .filter(|d| d.read == server)
            .flat_map(|d| {
                [
                    format!("{}frontend:", d.prefix),
                    format!("{}dead:", d.prefix),
                ]
            })
            .chain(
                path_sets
                    .iter()
                    .filter(|&&(_, s)| s == server)
                    .map(|&(prefix, _)| prefix.to_string()),
            )
            .collect();
        let certificates = certificates_on && server == table.default.read;
        if certificates {
            prefixes.push(crate::tls::redis_certs::KEY_PREFIX.into());
        }
        let prefixes = tracking::bcast_prefixes(prefixes);
        let url = table.servers[server].clone();
        let shard = shard.clone();
        let timeout = shard.config.redis_timeout;
        let unread = shard.route_cache.unread(server);
        monoio::spawn(async move {
            let mut sessions = 0u64;
            tracking::track(url, prefixes, timeout, &unread, |event| {
                let (cache, m) = (&shard.route_cache, &shard.metrics);
                match event {
                    Event::Live => {
                        cache.set_live(server, true);
                        if sessions > 0 {
                            metrics::add(&m.route_cache_reconnects, 1);
                        }
                        sessions += 1;
                    }
                    Event::Changed(keys) => {
                        metrics::add(&m.route_cache_invalidations, keys.len() as u64);
                        for key in &keys {
                            cache.changed(server, key);
                            if certificates
                                && key.starts_with(crate::tls::redis_certs::KEY_PREFIX.as_bytes())
                            {
                                shard.tls_certs.clear();
                            }
                        }
                    }
                    Event::All | Event::Lost => {
                        metrics::add(&m.route_cache_flushes, 1);
                        if event == Event::All {
                            cache.flush(server);
                        } else {
                            cache.set_live(server, false);
                        }
                        if certificates {
                            shard.tls_certs.clear();
                        }
                    }
                }
            })
            .await
        });
    }
}

/// Sends the shard's id when dropped: on return and on panic alike.
pub(super) struct ExitNotice {
    id: usize,
    tx: Sender<Stop>,
}

impl ExitNotice {
    pub(super) fn new(id: usize, tx: Sender<Stop>) -> Self {
        ExitNotice { id, tx }
    }
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let _ = self.tx.send(Stop::ShardDied(self.id));
    }
}

/// One listening socket of a shard and how its connections start.
pub(super) struct ShardListener {
    pub socket: StdListener,
    /// TLS settings if HTTPS.
    pub tls: Option<HttpsListener>,
    /// Each connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
}

/// What the main thread hands a shard thread.
pub(super) struct ShardSetup {
    pub id: usize,
    pub config: Arc<Config>,
    /// Listeners in address order.
    pub listeners: Vec<ShardListener>,
    pub core: Option<core_affinity::CoreId>,
    pub resolver_pool: monoio::blocking::DefaultThreadPool,
    pub ready: Ready,
    /// Raised by the main thread to start a drain.
    pub draining: Arc<AtomicBool>,
    pub access_log: Option<SyncSender<access_log::Message>>,
    pub metrics: Arc<ShardMetrics>,
    pub driver: DriverKind,
}

type ShardRuntime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// The shard's monoio runtime. On io_uring the ring is first set up for a
/// single thread that collects its own completions (COOP_TASKRUN,
/// SINGLE_ISSUER, DEFER_TASKRUN: completion work runs when the shard asks
/// for events instead of interrupting it); a kernel without those flags
/// (before 6.1) gets the default ring. `LOPACHE_PLAIN_RING=1` asks for the
/// default ring anyway, to measure the difference.
fn build_runtime(
    driver: DriverKind,
    pool: &monoio::blocking::DefaultThreadPool,
) -> std::io::Result<ShardRuntime> {
    let base = || {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .attach_thread_pool(Box::new(pool.clone()))
    };
    if driver == DriverKind::IoUring && std::env::var_os("LOPACHE_PLAIN_RING").is_none() {
        let mut ring = io_uring::IoUring::builder();
        ring.setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun();
        match base().uring_builder(ring).build() {
            Ok(runtime) => return Ok(runtime),
            Err(e) => {
                log_info!("io_uring without DEFER_TASKRUN ({e}); using a default ring")
            }
        }
    }
    base().build()
}

/// Thread body: pin, build the runtime, start accepting, report readiness.
pub(super) fn run_shard(setup: ShardSetup) {
    let ShardSetup {
        id,
        config,
        listeners,
        core,
        resolver_pool,
        ready,
        draining,
        access_log,
        metrics,
        driver,
    } = setup;
    log::set_shard(id);
    if let Some(core) = core {
        if !core_affinity::set_for_current(core) {
            log_warn!("could not pin to core {}", core.id);
        }
    }
    let mut runtime = match build_runtime(driver, &resolver_pool) {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send((id, Err(format!("cannot build runtime: {e}"))));
            return;
        }
    };
    runtime.block_on(async move {
        let slots = Rc::new(Semaphore::new(config.max_connections));
        let access_log = access_log.map(|tx| AccessLog::new(tx, metrics.clone()));
        let shard = Rc::new(Shard::new(id, config, metrics, driver, access_log));
        for ShardListener {
            socket,
            tls,
            proxy_protocol,
        } in listeners
        {
            match TcpListener::from_std(socket) {
                Ok(l) => {
                    let from_redis = shard.config.redis_certificates.is_some();
                    let tls = tls.map(|h| {
                        Rc::new(TlsListener {
                            config: h.tls,
                            names: h.names,
                            preset: h.preset,
                            from_redis,
                        })
                    });
                    let how = accept::Arrival {
                        tls,
                        proxy_protocol,
                    };
                    monoio::spawn(accept_loop(shard.clone(), l, how, slots.clone()));
                }
                Err(e) => {
                    let _ = ready.send((id, Err(format!("cannot register listener: {e}"))));
                    return;
                }
            }
        }
        let _ = ready.send((id, Ok(())));
        monoio::spawn(housekeeping(shard.clone()));
        let sweeper = shard.clone();
        monoio::spawn(async move { sweeper.idle.sweep().await });
        if shard.route_cache.enabled() {
            listen_for_dead_marks(&shard);
        }
        if shard.route_cache.mode() == CacheMode::Tracking {
            track_route_keys(&shard);
        }
        if shard.access_log.is_some() {
            monoio::spawn(flush_access_log(shard.clone()));
        }
        // Runs until a drain has finished: then the shard's thread ends.
        let max = shard.config.max_connections;
        drain::watch(draining, &shard.drain, || max - slots.available_permits()).await;
        if let Some(log) = &shard.access_log {
            log.flush();
        }
    });
}

//! The worker process: probe the io_uring driver once, take the listening
//! sockets the master handed down, drop privileges, start one pinned shard
//! thread per core, and announce readiness when all of them accept. Only
//! `Arc<Config>` and control messages cross threads.

mod accept;
mod shard_thread;
mod signals;

pub use crate::shard::DriverKind;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use signals::Stop;

use crate::config::{Config, HttpsListener};
use crate::net::sockets::{Kind, Sockets};
use crate::observe::metrics::ShardMetrics;
use crate::{log_info, log_warn};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("shard {shard} failed to start: {reason}")]
    ShardStart { shard: usize, reason: String },
    #[error("shard {0} stopped unexpectedly")]
    ShardDied(usize),
    #[error("admin.bind: cannot serve on {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the master passed no socket for {0}")]
    MissingSocket(String),
    #[error("cannot drop privileges to user/group: {0}")]
    Privileges(std::io::Error),
    #[error("server.access_log: cannot open {path}: {source}")]
    AccessLog {
        path: String,
        source: std::io::Error,
    },
}

/// A shard's listeners, in address order, each with its TLS settings if HTTPS.
type ShardListeners = Vec<shard_thread::ShardListener>;

/// The sockets the master handed down, sorted out for the shards.
struct Listeners {
    /// Per shard: every n-th socket of each group.
    per_shard: Vec<ShardListeners>,
    /// Each proxy address as bound (port 0 resolved), for the start line.
    bound: Vec<SocketAddr>,
    /// Each proxy address's TLS settings, in the same order.
    tls: Vec<Option<HttpsListener>>,
    /// The admin endpoint's socket, with its configured address.
    admin: Option<(SocketAddr, std::net::TcpListener)>,
}

/// What the shards and the main thread share.
struct Shared {
    draining: Arc<AtomicBool>,
    /// Set on a handover drain: the admin endpoint stops answering, so
    /// scrapes and health checks reach the worker taking over.
    admin_stop: Arc<AtomicBool>,
    metrics: Vec<Arc<ShardMetrics>>,
}

/// Runs the shards on `sockets` until a signal has drained them (Ok) or a
/// shard stops (Err). `ready` is written to once every shard accepts.
pub fn run(
    config: Config,
    mut sockets: Sockets,
    ready: Option<std::fs::File>,
) -> Result<(), RuntimeError> {
    // Before any thread exists, so that every thread inherits the mask and
    // only the signal thread ever takes the signals.
    signals::block_termination();
    let config = Arc::new(config);
    let driver = DriverKind::probe();
    let listeners = take_listeners(&config, &mut sockets)?;
    let shared = Shared {
        draining: Arc::default(),
        admin_stop: Arc::default(),
        metrics: (0..config.workers).map(|_| Arc::default()).collect(),
    };
    let admin = start_admin(listeners.admin, &shared)?;
    // Each shard thread reports here when it ends, however it ends; so does
    // the signal thread when SIGTERM or SIGINT arrives.
    let (exit_tx, exit_rx) = mpsc::channel::<Stop>();
    // The writer's own drops count with the first shard's.
    let dropped = shared.metrics[0].clone();
    let access_log = crate::observe::access_log::start_writer(&config.access_log, dropped)
        .map_err(|source| RuntimeError::AccessLog {
            path: config.access_log.to_string(),
            source,
        })?;
    // Files are open and sockets held: nothing below needs root.
    drop_privileges(&config)?;
    signals::spawn_waiter(exit_tx.clone(), access_log.clone()).map_err(|e| {
        RuntimeError::ShardStart {
            shard: 0,
            reason: format!("cannot start the signal thread: {e}"),
        }
    })?;
    let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<(), String>)>();
    start_shards(
        &config,
        listeners.per_shard,
        &shared,
        &ready_tx,
        &exit_tx,
        access_log,
        driver,
    )?;
    drop(ready_tx);
    drop(exit_tx);
    // Sentinel URLs start finding their server now, not at the first request.
    for url in &config.routing.servers {
        crate::redis::sentinel::for_url(url);
    }
    if config.healthcheck.is_some() {
        crate::health::start(config.clone(), shared.metrics[0].clone()).map_err(|e| {
            RuntimeError::ShardStart {
                shard: 0,
                reason: format!("cannot start the health checker: {e}"),
            }
        })?;
    }
    for _ in 0..config.workers {
        match ready_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((shard, Err(reason))) => return Err(RuntimeError::ShardStart { shard, reason }),
            Err(_) => return Err(RuntimeError::ShardDied(0)),
        }
    }
    announce(
        &listeners.bound,
        &listeners.tls,
        admin,
        config.workers,
        driver,
    );
    for warning in &config.warnings {
        log_warn!("{warning}");
    }
    if let Some(mut ready) = ready {
        // The master waits for this byte before it retires the old worker.
        use std::io::Write;
        let _ = ready.write_all(b"1");
    }
    // Shards run until the process ends; one stopping is a failure (a
    // supervisor restarts the process). A termination signal is a clean stop.
    match exit_rx.recv() {
        Ok(Stop::ShardDied(id)) => Err(RuntimeError::ShardDied(id)),
        Ok(Stop::Signal(sig)) => {
            if sig == libc::SIGQUIT {
                shared.admin_stop.store(true, Ordering::Relaxed);
            }
            let (workers, limit) = (config.workers, config.drain_timeout);
            drain_all(&shared.draining, &exit_rx, workers, limit, sig);
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

/// HTTP addresses first, then HTTPS ones, each with its TLS config; each
/// shard takes every n-th socket of a group (a group can be larger than the
/// shard count after a reload lowered it).
fn take_listeners(config: &Config, sockets: &mut Sockets) -> Result<Listeners, RuntimeError> {
    let mut listeners = Listeners {
        per_shard: (0..config.workers).map(|_| Vec::new()).collect(),
        bound: Vec::new(),
        tls: Vec::new(),
        admin: None,
    };
    for (key, _) in config.sockets() {
        let group = sockets
            .take(key)
            .ok_or_else(|| RuntimeError::MissingSocket(key.to_string()))?;
        let https = match key.kind {
            Kind::Admin => {
                listeners.admin = group.into_iter().next().map(|l| (key.addr, l));
                continue;
            }
            Kind::Http => None,
            Kind::Https => config
                .https_listeners
                .iter()
                .find(|l| l.addr == key.addr)
                .cloned(),
        };
        let bound = group.first().and_then(|l| l.local_addr().ok());
        listeners.bound.push(bound.unwrap_or(key.addr));
        listeners.tls.push(https.clone());
        let proxy_protocol = config.proxy_protocol.on(key);
        for (i, socket) in group.into_iter().enumerate() {
            listeners.per_shard[i % config.workers].push(shard_thread::ShardListener {
                socket,
                tls: https.clone(),
                proxy_protocol,
            });
        }
    }
    Ok(listeners)
}

/// Starts the admin endpoint's thread, if `admin.bind` is set; its address.
fn start_admin(
    admin: Option<(SocketAddr, std::net::TcpListener)>,
    shared: &Shared,
) -> Result<Option<SocketAddr>, RuntimeError> {
    let Some((configured, listener)) = admin else {
        return Ok(None);
    };
    let addr = listener
        .local_addr()
        .map_err(|source| RuntimeError::Admin {
            addr: configured,
            source,
        })?;
    crate::observe::admin::start(
        listener,
        shared.metrics.clone(),
        shared.draining.clone(),
        shared.admin_stop.clone(),
    )
    .map_err(|source| RuntimeError::Admin { addr, source })?;
    Ok(Some(addr))
}

/// Switches to `user`/`group` when started as root.
fn drop_privileges(config: &Config) -> Result<(), RuntimeError> {
    match config.run_as {
        Some(run_as) if crate::privileges::is_root() => {
            crate::privileges::drop_to(run_as).map_err(RuntimeError::Privileges)?
        }
        Some(_) => log_warn!("user/group set but not started as root: keeping this account"),
        None if crate::privileges::is_root() => log_warn!(
            "running as root with no `user` set: a compromise of this process \
             would own the machine; set user (and group) to drop privileges after binding"
        ),
        None => {}
    }
    Ok(())
}

/// Starts one pinned thread per shard; each reports on `ready` once it
/// accepts, and on `exit` when it ends.
fn start_shards(
    config: &Arc<Config>,
    per_shard: Vec<ShardListeners>,
    shared: &Shared,
    ready: &mpsc::Sender<(usize, Result<(), String>)>,
    exit: &mpsc::Sender<Stop>,
    access_log: Option<mpsc::SyncSender<crate::observe::access_log::Message>>,
    driver: DriverKind,
) -> Result<(), RuntimeError> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if cores.is_empty() {
        log_warn!("cannot list CPU cores; shards will not be pinned");
    }
    // Name resolution runs here, off the shards: as many threads as the
    // shards may run resolutions at once (and a few for Redis host names),
    // so none waits for another shard's.
    let resolver_pool = monoio::blocking::DefaultThreadPool::new(
        config.workers
            * (crate::upstream::dns::LOOKUPS_PER_SHARD
                + crate::upstream::dns::SPARE_THREADS_PER_SHARD),
    );
    for (id, listeners) in per_shard.into_iter().enumerate() {
        let setup = shard_thread::ShardSetup {
            id,
            config: config.clone(),
            listeners,
            core: (!cores.is_empty()).then(|| cores[id % cores.len()]),
            resolver_pool: resolver_pool.clone(),
            ready: ready.clone(),
            draining: shared.draining.clone(),
            access_log: access_log.clone(),
            metrics: shared.metrics[id].clone(),
            driver,
        };
        let exit_notice = shard_thread::ExitNotice::new(id, exit.clone());
        std::thread::Builder::new()
            .name(format!("lopache-shard-{id}"))
            .spawn(move || {
                let _exit = exit_notice;
                shard_thread::run_shard(setup)
            })
            .map_err(|e| RuntimeError::ShardStart {
                shard: id,
                reason: e.to_string(),
            })?;
    }
    Ok(())
}

/// Asks every shard to drain and waits until all have ended, or until
/// `limit` has passed (what is still open then is cut by the exit).
fn drain_all(
    flag: &std::sync::atomic::AtomicBool,
    exits: &mpsc::Receiver<Stop>,
    shards: usize,
    limit: std::time::Duration,
    signal: i32,
) {
    let why = if signal == libc::SIGQUIT {
        "handing over to a new worker"
    } else {
        "shutting down"
    };
    log_info!(
        "signal {signal} received, {why}: draining (up to {}s)",
        limit.as_secs()
    );
    flag.store(true, std::sync::atomic::Ordering::Relaxed);
    let deadline = crate::clock::from_now(limit);
    let mut ended = 0;
    while ended < shards {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match exits.recv_timeout(left) {
            Ok(Stop::ShardDied(_)) => ended += 1,
            Ok(Stop::Signal(_)) => {}
            Err(_) => {
                log_warn!(
                    "drain deadline reached with {} shard(s) still busy; exiting",
                    shards - ended
                );
                return;
            }
        }
    }
    log_info!("drained, exiting");
}

/// The readiness line (README, "Install and run"), printed once every listener accepts.
/// HTTPS addresses are written `https://addr`.
fn announce(
    bound: &[SocketAddr],
    tls: &[Option<HttpsListener>],
    admin: Option<SocketAddr>,
    shards: usize,
    driver: DriverKind,
) {
    let mut addrs: Vec<String> = bound
        .iter()
        .zip(tls)
        .map(|(a, t)| {
            if t.is_some() {
                format!("https://{a}")
            } else {
                a.to_string()
            }
        })
        .collect();
    // The admin address is written `admin://addr`.
    addrs.extend(admin.map(|a| format!("admin://{a}")));
    crate::observe::log::write_line(&format!(
        "lopache {} listening on {} ({} shard{}, {})\n",
        env!("CARGO_PKG_VERSION"),
        addrs.join(", "),
        shards,
        if shards == 1 { "" } else { "s" },
        driver.name()
    ));
    log_info!("ready");
}

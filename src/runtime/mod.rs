//! The worker process: probe the io_uring driver once, take the listening
//! sockets the master handed down, drop privileges, start one pinned shard
//! thread per core, and announce readiness when all of them accept. Only
//! `Arc<Config>` and control messages cross threads.

mod accept;
mod shard_thread;
mod signals;

pub use crate::shard::DriverKind;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;

use signals::Stop;

use crate::config::{Config, HttpsListener};
use crate::net::sockets::{Kind, Sockets};
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
    // HTTP addresses first, then HTTPS ones, each with its TLS config; each
    // shard takes every n-th socket of a group (a group can be larger than
    // the shard count after a reload lowered it).
    let mut listeners: Vec<Vec<(std::net::TcpListener, Option<HttpsListener>)>> =
        (0..config.workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    let mut tls: Vec<Option<HttpsListener>> = Vec::new();
    let mut admin_listener = None;
    for (key, _) in config.sockets() {
        let group = sockets
            .take(key)
            .ok_or_else(|| RuntimeError::MissingSocket(key.to_string()))?;
        let https = match key.kind {
            Kind::Admin => {
                admin_listener = group.into_iter().next().map(|l| (key.addr, l));
                continue;
            }
            Kind::Http => None,
            Kind::Https => config
                .https_listeners
                .iter()
                .find(|l| l.addr == key.addr)
                .cloned(),
        };
        bound.push(
            group
                .first()
                .and_then(|l| l.local_addr().ok())
                .unwrap_or(key.addr),
        );
        tls.push(https.clone());
        for (i, listener) in group.into_iter().enumerate() {
            listeners[i % config.workers].push((listener, https.clone()));
        }
    }
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
    let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<(), String>)>();
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let metrics: Vec<Arc<crate::observe::metrics::ShardMetrics>> =
        (0..config.workers).map(|_| Arc::default()).collect();
    // Set on a handover drain: the admin endpoint stops answering, so
    // scrapes and health checks reach the worker taking over.
    let admin_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let admin = match admin_listener {
        Some((configured, listener)) => {
            let addr = listener
                .local_addr()
                .map_err(|source| RuntimeError::Admin {
                    addr: configured,
                    source,
                })?;
            crate::observe::admin::start(
                listener,
                metrics.clone(),
                draining.clone(),
                admin_stop.clone(),
            )
            .map_err(|source| RuntimeError::Admin { addr, source })?;
            Some(addr)
        }
        None => None,
    };
    // Each shard thread reports here when it ends, however it ends; so does
    // the signal thread when SIGTERM or SIGINT arrives.
    let (exit_tx, exit_rx) = mpsc::channel::<Stop>();
    let access_log =
        crate::observe::access_log::start_writer(&config.access_log).map_err(|source| {
            RuntimeError::AccessLog {
                path: config.access_log.to_string(),
                source,
            }
        })?;
    // Files are open and sockets held: nothing below needs root.
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
    signals::spawn_waiter(exit_tx.clone(), access_log.clone()).map_err(|e| {
        RuntimeError::ShardStart {
            shard: 0,
            reason: format!("cannot start the signal thread: {e}"),
        }
    })?;
    for (id, shard_listeners) in listeners.into_iter().enumerate() {
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let cfg = config.clone();
        let tx = ready_tx.clone();
        let pool = resolver_pool.clone();
        let exit = shard_thread::ExitNotice::new(id, exit_tx.clone());
        let flag = draining.clone();
        let log = access_log.clone();
        let shard_metrics = metrics[id].clone();
        std::thread::Builder::new()
            .name(format!("lopache-shard-{id}"))
            .spawn(move || {
                let _exit = exit;
                shard_thread::run_shard(shard_thread::ShardSetup {
                    id,
                    config: cfg,
                    listeners: shard_listeners,
                    core,
                    resolver_pool: pool,
                    ready: tx,
                    draining: flag,
                    access_log: log,
                    metrics: shard_metrics,
                    driver,
                })
            })
            .map_err(|e| RuntimeError::ShardStart {
                shard: id,
                reason: e.to_string(),
            })?;
    }
    drop(ready_tx);
    drop(exit_tx);
    for _ in 0..config.workers {
        match ready_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((shard, Err(reason))) => return Err(RuntimeError::ShardStart { shard, reason }),
            Err(_) => return Err(RuntimeError::ShardDied(0)),
        }
    }
    announce(&bound, &tls, admin, config.workers, driver);
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
                admin_stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            drain_all(
                &draining,
                &exit_rx,
                config.workers,
                config.drain_timeout,
                sig,
            );
            Ok(())
        }
        Err(_) => Ok(()),
    }
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

/// The readiness line (SPEC section 1), printed once every listener accepts.
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

//! Startup: probe the io_uring driver once, bind every listener, start one
//! pinned shard thread per worker, and announce readiness when all of them
//! accept. Only `Arc<Config>` and a readiness message cross threads.

mod drain;
mod shard;
mod signals;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;

pub use shard::Shard;
use signals::Stop;

use crate::config::{Config, HttpsListener};
use crate::net::listener::{bind_all, BindError};
use crate::{log_info, log_warn};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Bind(#[from] BindError),
    #[error("shard {shard} failed to start: {reason}")]
    ShardStart { shard: usize, reason: String },
    #[error("shard {0} stopped unexpectedly")]
    ShardDied(usize),
    #[error("admin.bind: cannot listen on {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server.access_log: cannot open {path}: {source}")]
    AccessLog {
        path: String,
        source: std::io::Error,
    },
}

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

/// Runs the proxy until a shard stops; returns only on failure.
pub fn run(config: Config) -> Result<(), RuntimeError> {
    // Before any thread exists, so that every thread inherits the mask and
    // only the signal thread ever takes SIGTERM/SIGINT.
    signals::block_termination();
    let config = Arc::new(config);
    let driver = DriverKind::probe();
    // HTTP addresses first, then HTTPS ones, each with its TLS config.
    let mut addrs = config.http_listeners.clone();
    let mut tls: Vec<Option<HttpsListener>> = vec![None; addrs.len()];
    for l in &config.https_listeners {
        addrs.push(l.addr);
        tls.push(Some(l.clone()));
    }
    let (listeners, bound) = bind_all(&addrs, config.workers)?;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if cores.is_empty() {
        log_warn!("cannot list CPU cores; shards will not be pinned");
    }
    // Name resolution runs here, off the shards; two threads are plenty for
    // lookups that are cached per shard.
    let resolver_pool = monoio::blocking::DefaultThreadPool::new(2);
    let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<(), String>)>();
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let metrics: Vec<Arc<crate::observe::metrics::ShardMetrics>> =
        (0..config.workers).map(|_| Arc::default()).collect();
    let admin = match config.raw.admin.bind.parse::<SocketAddr>() {
        Ok(addr) => Some(
            crate::observe::admin::start(addr, metrics.clone(), draining.clone())
                .map_err(|source| RuntimeError::Admin { addr, source })?,
        ),
        Err(_) => None,
    };
    // Each shard thread reports here when it ends, however it ends; so does
    // the signal thread when SIGTERM or SIGINT arrives.
    let (exit_tx, exit_rx) = mpsc::channel::<Stop>();
    let access_log = crate::observe::access_log::start_writer(&config.raw.server.access_log)
        .map_err(|source| RuntimeError::AccessLog {
            path: config.raw.server.access_log.clone(),
            source,
        })?;
    signals::spawn_waiter(exit_tx.clone(), access_log.clone()).map_err(|e| {
        RuntimeError::ShardStart {
            shard: 0,
            reason: format!("cannot start the signal thread: {e}"),
        }
    })?;
    for (id, shard_listeners) in listeners.into_iter().enumerate() {
        let shard_listeners: Vec<_> = shard_listeners
            .into_iter()
            .zip(tls.iter().cloned())
            .collect();
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let cfg = config.clone();
        let tx = ready_tx.clone();
        let pool = resolver_pool.clone();
        let exit = shard::ExitNotice::new(id, exit_tx.clone());
        let flag = draining.clone();
        let log = access_log.clone();
        let shard_metrics = metrics[id].clone();
        std::thread::Builder::new()
            .name(format!("lopache-shard-{id}"))
            .spawn(move || {
                let _exit = exit;
                shard::run_shard(shard::ShardSetup {
                    id,
                    config: cfg,
                    listeners: shard_listeners,
                    core,
                    resolver_pool: pool,
                    ready: tx,
                    draining: flag,
                    access_log: log,
                    metrics: shard_metrics,
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
    // Shards run until the process ends; one stopping is a failure (a
    // supervisor restarts the process). A termination signal is a clean stop.
    match exit_rx.recv() {
        Ok(Stop::ShardDied(id)) => Err(RuntimeError::ShardDied(id)),
        Ok(Stop::Signal(sig)) => {
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
    log_info!(
        "signal {signal} received: draining (up to {}s)",
        limit.as_secs()
    );
    flag.store(true, std::sync::atomic::Ordering::Relaxed);
    let deadline = std::time::Instant::now() + limit;
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
    eprintln!(
        "lopache {} listening on {} ({} shard{}, {})",
        env!("CARGO_PKG_VERSION"),
        addrs.join(", "),
        shards,
        if shards == 1 { "" } else { "s" },
        driver.name()
    );
    log_info!("ready");
}

//! Active health checks (`[healthcheck]`, PlanB's `--active-healthcheck`,
//! HAProxy's `check`): one checker thread per worker, never a shard, checks
//! the backends of every frontend that has a `healthcheck:<host>` hash, each
//! once per interval, the checks spread over the interval and at most
//! `concurrency` at once. `fall` failures in a row mark a backend dead the
//! way Hipache's hchecker does (SADD and EXPIRE `dead:<host>`, PUBLISH
//! `dead`), refreshed while it keeps failing; `rise` passes in a row take it
//! out of the dead set again (SREM). For these frontends the checks decide:
//! a backend that passes is taken out of the dead set whoever marked it (a
//! failed request, an index left over from an older list), since the set
//! has one expiry that a failing sibling keeps renewing. The marks go to the
//! write Redis, so the per-request lookups of every box see them.

pub mod probe;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use local_sync::semaphore::Semaphore;
use monoio_rustls::TlsConnector;

use crate::config::routes::Destination;
use crate::config::{Config, Healthcheck};
use crate::observe::metrics::{self, ShardMetrics};
use crate::redis::codec::{string_bytes, strings};
use crate::redis::{RedisClient, Reply};
use crate::routing::dead::{mark_alive, mark_checked_dead, DeadMark, MarkTarget};
use crate::{log_debug, log_info, log_warn};
use probe::{Check, Failed, Prober};

/// `healthcheck:` keys read at most per keyspace and round.
const MAX_FRONTENDS: usize = 100_000;
/// Backends of one frontend checked at most (the list's first ones).
const MAX_BACKENDS: usize = 1000;

/// Starts the checker thread.
pub fn start(config: Arc<Config>, metrics: Arc<ShardMetrics>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("lopache-healthcheck".into())
        .spawn(move || {
            // The resolver's threads: at most LOOKUPS_PER_SHARD run at once.
            let pool =
                monoio::blocking::DefaultThreadPool::new(crate::upstream::dns::LOOKUPS_PER_SHARD);
            let runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                .enable_timer()
                .attach_thread_pool(Box::new(pool))
                .build();
            match runtime {
                Ok(mut rt) => rt.block_on(run(config, metrics)),
                Err(e) => log_warn!("healthcheck: cannot start its runtime: {e}"),
            }
        })?;
    Ok(())
}

/// One backend of one frontend, as a round found it.
struct Target {
    destination: usize,
    check: Rc<Check>,
    url: String,
    index: usize,
    count: usize,
    /// In the dead set when found (the state a new target starts from).
    listed_dead: bool,
}

/// What the checker remembers of a backend between rounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct State {
    down: bool,
    passes: u32,
    failures: u32,
}

/// What a check's result asks to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Nothing,
    /// Newly down: mark and announce.
    MarkDown,
    /// Still down: refresh the mark's expiry, quietly.
    Refresh,
    /// Up again: out of the dead set.
    MarkUp,
    /// Up all along, but in the dead set (a failed request's mark, a stale
    /// index): out of it, without a state change.
    Clear,
}

impl State {
    /// `listed_dead`: the backend's index is in the dead set this round.
    fn record(&mut self, passed: bool, listed_dead: bool, rules: &Healthcheck) -> Write {
        if passed {
            self.passes += 1;
            self.failures = 0;
            if self.passes < rules.rise {
                return Write::Nothing;
            }
            if self.down {
                self.down = false;
                return Write::MarkUp;
            }
            if listed_dead {
                Write::Clear
            } else {
                Write::Nothing
            }
        } else {
            self.failures += 1;
            self.passes = 0;
            if self.down {
                Write::Refresh
            } else if self.failures >= rules.fall {
                self.down = true;
                Write::MarkDown
            } else {
                Write::Nothing
            }
        }
    }
}

/// Keyspace, host, index, URL: a URL listed twice (Hipache's weighting) is
/// two backends, each with its own mark.
type StateKey = (usize, String, usize, String);

struct Checker {
    config: Arc<Config>,
    rules: Healthcheck,
    servers: Vec<RedisClient>,
    destinations: Vec<Destination>,
    prober: Prober,
    slots: Rc<Semaphore>,
    states: RefCell<HashMap<StateKey, State>>,
    metrics: Arc<ShardMetrics>,
}

async fn run(config: Arc<Config>, metrics: Arc<ShardMetrics>) {
    let Some(rules) = config.healthcheck.clone() else {
        return;
    };
    let servers = RedisClient::for_servers(&config.routing.servers, config.redis_timeout, &metrics);
    let mut destinations = vec![config.routing.default.clone()];
    for route in &config.routing.routes {
        if !destinations.contains(&route.destination) {
            destinations.push(route.destination.clone());
        }
    }
    let checker = Rc::new(Checker {
        prober: Prober {
            connector: TlsConnector::from(config.backend_tls.clone()),
            limits: config.limits,
            timeout: rules.timeout,
            resolver: crate::upstream::dns::Resolver::new(config.dns_ttl),
        },
        slots: Rc::new(Semaphore::new(rules.concurrency)),
        rules,
        servers,
        destinations,
        states: RefCell::default(),
        metrics,
        config,
    });
    loop {
        let started = Instant::now();
        checker.prober.resolver.sweep();
        let targets = checker.discover().await;
        checker.forget_all_but(&targets);
        checker.clone().round(targets).await;
        let next = crate::clock::after(started, checker.rules.interval);
        monoio::time::sleep_until(next.into()).await;
    }
}

impl Checker {
    /// Every backend of every frontend with a `healthcheck:` hash, in every keyspace.
    async fn discover(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        for (d, destination) in self.destinations.iter().enumerate() {
            let read = &self.servers[destination.read];
            match self.discover_in(d, destination, read, &mut targets).await {
                Ok(()) => {}
                Err(e) => log_warn!(
                    "healthcheck: reading {}healthcheck:* failed: {e}",
                    destination.prefix
                ),
            }
        }
        targets
    }

    async fn discover_in(
        &self,
        d: usize,
        destination: &Destination,
        read: &RedisClient,
        targets: &mut Vec<Target>,
    ) -> Result<(), String> {
        let pattern = format!("{}healthcheck:*", destination.prefix);
        let mut cursor = b"0".to_vec();
        let mut keys = Vec::new();
        loop {
            let reply = read
                .command(&[
                    b"SCAN",
                    &cursor,
                    b"MATCH",
                    pattern.as_bytes(),
                    b"COUNT",
                    b"1000",
                ])
                .await
                .map_err(|e| e.to_string())?;
            // [next cursor, [keys]]
            let shape = match crate::redis::codec::array_items(&reply) {
                Some([next, found]) => string_bytes(next).zip(strings(found)),
                _ => None,
            };
            let Some((next, found)) = shape else {
                return Err(format!("SCAN answered {reply:?}"));
            };
            // Keys that are not UTF-8 name no host lopache could be asked for.
            keys.extend(
                found
                    .into_iter()
                    .filter_map(|k| String::from_utf8(k.to_vec()).ok()),
            );
            if next == b"0" || keys.len() >= MAX_FRONTENDS {
                break;
            }
            cursor = next.to_vec();
        }
        for key in keys {
            let host = &key[pattern.len() - 1..];
            if let Some(found) = self.frontend(d, destination, read, host, &key).await? {
                targets.extend(found);
            }
        }
        Ok(())
    }

    /// One frontend's check and backends; `None` if its hash is unusable.
    async fn frontend(
        &self,
        d: usize,
        destination: &Destination,
        read: &RedisClient,
        host: &str,
        hash_key: &str,
    ) -> Result<Option<Vec<Target>>, String> {
        let prefix = &destination.prefix;
        let list_key = format!("{prefix}frontend:{host}");
        let dead_key = format!("{prefix}dead:{host}");
        let replies = read
            .query(|out| {
                crate::redis::codec::encode_command(out, &[b"HGETALL", hash_key.as_bytes()]);
                crate::redis::codec::encode_command(
                    out,
                    &[b"LRANGE", list_key.as_bytes(), b"0", b"-1"],
                );
                crate::redis::codec::encode_command(out, &[b"SMEMBERS", dead_key.as_bytes()]);
                3
            })
            .await
            .map_err(|e| e.to_string())?;
        let [fields, list, dead] = <[Reply; 3]>::try_from(replies).map_err(|_| "short reply")?;
        let check = match parse_check(host, &fields, &self.rules.path) {
            Ok(check) => Rc::new(check),
            Err(e) => {
                log_warn!("healthcheck: {hash_key}: {e}; not checked");
                return Ok(None);
            }
        };
        // Lossy, not filtered: a backend's index is its place in the list.
        let backends: Vec<String> = strings(&list)
            .unwrap_or_default()
            .into_iter()
            .skip(1)
            .take(MAX_BACKENDS)
            .map(|url| String::from_utf8_lossy(url).into_owned())
            .collect();
        let dead = crate::routing::lookup::dead_indexes(&dead).unwrap_or_default();
        let count = backends.len();
        Ok(Some(
            backends
                .into_iter()
                .enumerate()
                .map(|(index, url)| Target {
                    destination: d,
                    check: check.clone(),
                    listed_dead: dead.contains(&index),
                    url,
                    index,
                    count,
                })
                .collect(),
        ))
    }

    /// Forgets backends no longer listed (a new listing starts afresh).
    fn forget_all_but(&self, targets: &[Target]) {
        let mut states = self.states.borrow_mut();
        states.retain(|(d, host, index, url), _| {
            targets.iter().any(|t| {
                t.destination == *d && t.check.host == *host && t.index == *index && t.url == *url
            })
        });
    }

    /// Checks every target once, spread over the interval.
    async fn round(self: Rc<Self>, targets: Vec<Target>) {
        let n = targets.len().max(1) as u32;
        let spacing = self.rules.interval / n;
        let mut running = Vec::with_capacity(targets.len());
        for (i, target) in targets.into_iter().enumerate() {
            let checker = self.clone();
            let at = Instant::now() + spacing * i as u32;
            running.push(monoio::spawn(async move {
                monoio::time::sleep_until(at.into()).await;
                checker.check(target).await;
            }));
        }
        for task in running {
            task.await;
        }
    }

    async fn check(&self, target: Target) {
        let Ok(_slot) = self.slots.acquire().await else {
            return;
        };
        let outcome = match self.prober.probe(&target.url, &target.check).await {
            Ok(()) => Ok(()),
            Err(Failed::Backend(why)) => Err(why),
            Err(Failed::Unchecked(why)) => {
                // Says nothing about the backend: no count, no state change.
                log_debug!(
                    "healthcheck: {} of {} not checked: {why}",
                    target.url,
                    target.check.host
                );
                return;
            }
        };
        metrics::add(&self.metrics.health_checks, 1);
        if outcome.is_err() {
            metrics::add(&self.metrics.health_failures, 1);
        }
        let key = (
            target.destination,
            target.check.host.clone(),
            target.index,
            target.url.clone(),
        );
        let write = {
            let mut states = self.states.borrow_mut();
            let state = states.entry(key).or_insert_with(|| State {
                down: target.listed_dead,
                ..State::default()
            });
            state.record(outcome.is_ok(), target.listed_dead, &self.rules)
        };
        if matches!(write, Write::MarkDown | Write::MarkUp) {
            metrics::add(&self.metrics.health_changes, 1);
            match (&outcome, write) {
                (Err(why), _) => log_info!(
                    "healthcheck: {} of {} is down ({why})",
                    target.url,
                    target.check.host
                ),
                _ => log_info!("healthcheck: {} of {} is up", target.url, target.check.host),
            }
        }
        self.write(&target, write).await;
    }

    async fn write(&self, target: &Target, write: Write) {
        let destination = &self.destinations[target.destination];
        let to = MarkTarget {
            write: &self.servers[destination.write],
            prefix: &destination.prefix,
        };
        let mark = DeadMark {
            host: target.check.host.clone(),
            list_key: format!("{}frontend:{}", destination.prefix, target.check.host),
            url: target.url.clone(),
            index: target.index,
            count: target.count,
        };
        let ttl = self.config.dead_backend_ttl;
        let done = match write {
            Write::Nothing => return,
            Write::MarkDown => mark_checked_dead(to, &mark, ttl, true).await,
            Write::Refresh => mark_checked_dead(to, &mark, ttl, false).await,
            Write::MarkUp | Write::Clear => mark_alive(to, &mark).await,
        };
        if let Err(e) = done {
            log_warn!("healthcheck: writing {}'s state failed: {e}", target.url);
        }
    }
}

/// A `healthcheck:<host>` hash: `path` (else the configured one), and
/// optionally `status`, `body` and `method` (GET by default).
fn parse_check(host: &str, fields: &Reply, default_path: &str) -> Result<Check, String> {
    let Reply::Array(items) = fields else {
        return Err(format!("not a hash: {fields:?}"));
    };
    let text = |r: &Reply| match r {
        Reply::BulkString(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    };
    let mut check = Check {
        host: host.to_string(),
        method: "GET".into(),
        path: default_path.to_string(),
        status: None,
        body: None,
    };
    for pair in items.chunks(2) {
        let [name, value] = pair else {
            return Err("odd field count".into());
        };
        let (Some(name), Some(value)) = (text(name), text(value)) else {
            return Err("a field that is not text".into());
        };
        match name.as_str() {
            "path" if crate::http::is_origin_path(&value) => check.path = value,
            "path" => return Err(format!("path {value:?} is not a path like /health")),
            "status" => match value.parse::<u16>() {
                Ok(s) if (100..=599).contains(&s) => check.status = Some(s),
                _ => return Err(format!("status {value:?} is not an HTTP status")),
            },
            "body" if !value.is_empty() => check.body = Some(value),
            "body" => {}
            "method" if matches!(value.as_str(), "GET" | "HEAD" | "OPTIONS" | "POST") => {
                check.method = value
            }
            "method" => {
                return Err(format!(
                    "method {value:?} is not GET, HEAD, OPTIONS or POST"
                ))
            }
            _ => {}
        }
    }
    if !is_host(host) {
        return Err(format!("{host:?} is not a host name"));
    }
    if check.method == "HEAD" && check.body.is_some() {
        return Err("a HEAD answer has no body to look for the body field in".into());
    }
    Ok(check)
}

/// A host lopache can put in a request's `Host` field as is.
fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_*".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rules() -> Healthcheck {
        Healthcheck {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            path: "/".into(),
            rise: 2,
            fall: 3,
            concurrency: 8,
        }
    }

    #[test]
    fn fall_then_rise() {
        let r = rules();
        let mut s = State::default();
        let seen: Vec<Write> = [false, false, false, false, true, false, true, true, true]
            .into_iter()
            .map(|passed| s.record(passed, false, &r))
            .collect();
        use Write::*;
        assert_eq!(
            seen,
            [Nothing, Nothing, MarkDown, Refresh, Nothing, Refresh, Nothing, MarkUp, Nothing]
        );
        // A pass between failures starts the count again.
        let mut s = State::default();
        for passed in [false, false, true, false, false] {
            assert_eq!(s.record(passed, false, &r), Nothing);
        }
        // Up, but marked by someone else: cleared once it has passed `rise` times.
        let mut s = State::default();
        assert_eq!(s.record(true, true, &r), Nothing);
        assert_eq!(s.record(true, true, &r), Clear);
        assert_eq!(s.record(true, false, &r), Nothing);
        assert!(!s.down);
    }

    #[test]
    fn hashes() {
        let bulk = |s: &str| Reply::BulkString(s.as_bytes().to_vec());
        let hash = |pairs: &[(&str, &str)]| {
            Reply::Array(pairs.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect())
        };
        let c = parse_check("app.example", &hash(&[]), "/").unwrap();
        assert_eq!(
            (c.method.as_str(), c.path.as_str(), c.status, c.body),
            ("GET", "/", None, None)
        );
        let c = parse_check(
            "app.example",
            &hash(&[
                ("path", "/hc"),
                ("status", "204"),
                ("body", "OK"),
                ("method", "OPTIONS"),
            ]),
            "/",
        )
        .unwrap();
        assert_eq!(c.path, "/hc");
        assert_eq!(
            (c.status, c.body.as_deref(), c.method.as_str()),
            (Some(204), Some("OK"), "OPTIONS")
        );
        for bad in [
            hash(&[("path", "no-slash")]),
            hash(&[("path", "/a b")]),
            hash(&[("status", "999")]),
            hash(&[("method", "DELETE")]),
            hash(&[("method", "HEAD"), ("body", "OK")]),
            hash(&[("path", "/a#b")]),
            bulk("a string"),
        ] {
            assert!(parse_check("app.example", &bad, "/").is_err(), "{bad:?}");
        }
        assert!(parse_check("bad host\r\n", &hash(&[]), "/").is_err());
    }
}

//! Forwarding one request: choose the route's keyspace, look the host up,
//! pick a live backend and try it (`attempt.rs`); after a failed attempt,
//! mark the backend dead and try another as `failure.rs` decides, or answer
//! with the error page. Retries re-read Redis, as Hipache does.

use super::attempt::{attempt, Attempt};
use super::client::Client;
use super::error::ProxyError;
use super::exchange::{Exchange, Next, Target};
use super::reply::reply_error;
use crate::http::response::ResponseHead;
use crate::log_debug;
use crate::observe::metrics;
use crate::routing::cache::{HostHash, RouteCache};
use crate::routing::dead::{self, DeadMark};
use crate::routing::lookup::LookupError;
use crate::routing::rules::RequestFacts;
use crate::routing::{choose_backend, choose_destination, find_frontend, Lookup, RouteError};
use crate::shard::Shard;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

pub(super) async fn forward<S: AsyncReadRent + AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
    up_head: Vec<u8>,
    host: String,
    host_hash: HostHash,
    facts: RequestFacts,
) -> Next {
    let cfg = &shard.config;
    // Before anything is queued for Redis: a lookup the route's conditions
    // prefetch is kept only if no change was reported meanwhile.
    let first_ticket = shard.route_cache.ticket();
    let with_ttls = shard.route_cache.asks_expiry();
    let (destination, mut prefetched) = match choose_destination(
        &cfg.routing,
        &shard.redis,
        &facts,
        &host,
        cfg.limits.path_segments,
        &shard.route_cache,
        first_ticket,
    )
    .await
    {
        Ok(chosen) => chosen,
        Err(e) => return routing_unavailable(shard, client, exchange, &host, e, None).await,
    };
    let slot = RouteCache::slot(&cfg.routing, destination);
    let mut tried: Vec<usize> = Vec::new();
    let mut failures = 0u32;
    let mut last: Option<Target> = None;
    loop {
        // Each attempt looks the host up afresh (retries re-read Redis, as Hipache's do),
        // except the first when the route's conditions already fetched it.
        // With the route cache on, the first attempt may reuse a recent
        // lookup; a retry always reads Redis (and refreshes the cache).
        let cache = &shard.route_cache;
        // A lookup the conditions already fetched is newer than the cache's.
        let cached = match (failures, &prefetched) {
            (0, None) => cache.get(slot, &host, host_hash),
            _ => None,
        };
        if failures == 0 && cache.enabled() {
            let counter = match cached {
                Some(_) => &shard.metrics.route_cache_hits,
                None => &shard.metrics.route_cache_misses,
            };
            metrics::add(counter, 1);
        }
        let looked_up = match (prefetched.take(), cached) {
            (Some(found), _) => {
                cache.put(slot, &host, &found, first_ticket);
                Ok(found)
            }
            (None, Some(found)) => Ok(found),
            (None, None) => {
                let ticket = cache.ticket();
                let read = &shard.redis[destination.read];
                let found = find_frontend(read, &destination.prefix, &host, with_ttls).await;
                let found = found.map(Lookup::from);
                if let Ok(f) = &found {
                    cache.put(slot, &host, f, ticket);
                }
                found
            }
        };
        let frontend = match looked_up {
            Ok(Lookup::Frontend(f)) => f,
            Ok(Lookup::NoFrontend) => {
                return reply_error(shard, client, exchange, ProxyError::UnknownFrontend, None)
                    .await
            }
            Err(e) => {
                return routing_unavailable(shard, client, exchange, &host, e, last.as_ref()).await;
            }
        };
        let Some(index) = choose_backend(&frontend, &host, &shard.dead, &tried) else {
            let error = if failures > 0 {
                ProxyError::UpstreamConnect
            } else {
                ProxyError::NoLiveBackend
            };
            return reply_error(shard, client, exchange, error, last.as_ref()).await;
        };
        if exchange.log.is_some() {
            exchange.identifier = Some(frontend.identifier().to_string());
        }
        let target = Target {
            destination,
            host: &host,
            frontend,
            index,
        };
        let failure = match attempt(shard, client, exchange, &up_head, &target).await {
            Attempt::Done(next) => return next,
            Attempt::Failed(failure) => failure,
        };
        log_debug!("{host}: backend {} failed: {failure:?}", target.url());
        tried.push(index);
        let verdict = failure.verdict(exchange.replayable());
        if verdict.mark_dead {
            mark_backend_dead(shard, &target);
        }
        failures += 1;
        let may_retry = verdict.retry && failures <= cfg.retry_on_error;
        if may_retry {
            metrics::add(&shard.metrics.retries, 1);
        }
        last = Some(target);
        if !may_retry {
            let error = failure.error();
            return reply_error(shard, client, exchange, error, last.as_ref()).await;
        }
    }
}

/// Routing failed: Redis could not answer (counted, 503), the frontend's
/// list is too large (502), or the path too long for route conditions (414).
async fn routing_unavailable<S: AsyncWriteRent>(
    shard: &Shard,
    client: &mut Client<S>,
    exchange: &mut Exchange,
    host: &str,
    error: RouteError,
    target: Option<&Target<'_>>,
) -> Next {
    log_debug!("routing {host} failed: {error}");
    let answer = match error {
        RouteError::Redis(_) | RouteError::BadReply(LookupError::BadReply(_)) => {
            metrics::add(&shard.metrics.redis_errors, 1);
            ProxyError::RoutingUnavailable
        }
        RouteError::BadReply(LookupError::TooLarge(_)) => ProxyError::RouteTooLarge,
        RouteError::PathTooLong(_) => ProxyError::PathTooLong,
    };
    reply_error(shard, client, exchange, answer, target).await
}

/// Which answers mark a backend dead (README, "Dead backends"): 501-599
/// (but not 503 with Retry-After), and 500 when configured.
pub(super) fn marks_dead(shard: &Shard, resp: &ResponseHead) -> bool {
    match resp.status {
        500 => shard.config.dead_backend_on_500,
        503 => !resp.retry_after,
        501..=599 => true,
        _ => false,
    }
}

/// Flags the backend on this shard and tells Redis, for frontends with a
/// choice of backends (a lone backend is never taken out of rotation).
pub(super) fn mark_backend_dead(shard: &Shard, target: &Target) {
    let host = target.host;
    if target.count() < 2 {
        return;
    }
    let cfg = &shard.config;
    let url = target.url();
    if !shard.dead.flag(host, url, cfg.dead_backend_ttl) {
        return; // flagged by a request that failed before this one
    }
    shard.route_cache.forget(host);
    let prefix = &target.destination.prefix;
    let mark = DeadMark {
        host: host.to_string(),
        list_key: format!("{prefix}frontend:{}", target.frontend.key(host)),
        url: url.to_string(),
        index: target.index,
        count: target.count(),
    };
    metrics::add(&shard.metrics.dead_marks, 1);
    let write = shard.redis[target.destination.write].clone();
    let prefix = target.destination.prefix.clone();
    let (ttl, counters) = (cfg.dead_backend_ttl, shard.metrics.clone());
    // Its own task: a write Redis that is slow or gone (a failover) costs
    // the mark, counted, never the request.
    monoio::spawn(async move {
        if !dead::publish(write, prefix, mark, ttl).await {
            metrics::add(&counters.dead_marks_lost, 1);
        }
    });
}

//! Routing: from a request to one backend. Lopache's routes pick the keyspace
//! (destination); Hipache's lookup (candidates, frontend lists, dead sets) runs
//! there in one pipelined round trip; a backend is chosen at random among the
//! live ones; failures are marked dead in that destination.

pub mod cache;
pub mod candidates;
pub mod dead;
mod host_key;
mod host_table;
pub mod lease;
pub mod lookup;
pub mod path_sets;
pub mod rules;

pub use lookup::Frontend;

use crate::config::routes::{Destination, RouteTable};
use crate::redis::codec::{encode_command_parts, Reply};
use crate::redis::{RedisClient, RedisError};
use cache::{PathSet, RouteCache, Ticket};
use dead::DeadBackends;
use rules::{evaluate, path_queries, pre_evaluate, PathPatterns, RequestFacts, Tri};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("{0}")]
    BadReply(#[from] lookup::LookupError),
    #[error("{0}")]
    PathTooLong(#[from] rules::PathTooLong),
}

/// What a lookup found for a host: its frontend, or that it has none (an
/// unknown host, answered 400). Where no lookup was made at all (nothing
/// cached, nothing fetched with a route's conditions), the caller has `None`
/// of this, not a third variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Frontend(Frontend),
    NoFrontend,
}

impl From<Option<Frontend>> for Lookup {
    fn from(found: Option<Frontend>) -> Self {
        found.map_or(Lookup::NoFrontend, Lookup::Frontend)
    }
}

/// Looks the host up: `Ok(None)` when no frontend matches. `with_ttls`
/// also asks when the keys read expire (for the tracking route cache).
pub async fn find_frontend(
    read: &RedisClient,
    prefix: &str,
    host: &str,
    with_ttls: bool,
) -> Result<Option<Frontend>, RouteError> {
    let cands = candidates::Candidates::new(host);
    // Concurrent lookups of one host share a single lookup in the pipeline.
    let replies = read
        .query_shared(|out| lookup::encode_lookup(prefix, host, &cands, with_ttls, out))
        .await?;
    Ok(lookup::decode_shared_lookup(&replies, &cands, with_ttls)?)
}

/// The destination for a request: the first route whose condition holds, or
/// the default. When a route's `path_matches` checks go to the same Redis as
/// its destination, the destination's host lookup travels in the same
/// pipeline, and is returned (as `Some(Lookup)`) when the route wins.
/// `path_matches` sets the route cache keeps answer without Redis; a set
/// asked is also fetched whole to be kept (`path_sets`) when the cache could
/// keep it (`RouteCache::path_set`), if nothing was reported since `ticket`.
pub async fn choose_destination<'t>(
    table: &'t RouteTable,
    clients: &[RedisClient],
    facts: &RequestFacts,
    host: &str,
    max_segments: usize,
    cache: &RouteCache,
    ticket: Ticket,
) -> Result<(&'t Destination, Option<Lookup>), RouteError> {
    let with_ttls = cache.asks_expiry();
    for route in &table.routes {
        match pre_evaluate(&route.condition, facts) {
            Tri::False => continue,
            Tri::True => return Ok((&route.destination, None)),
            Tri::Unknown => {}
        }
        let dest = &route.destination;
        let queries = path_queries(&route.condition);
        let patterns = PathPatterns::new(&facts.path, max_segments)?;
        for (prefix, _) in &queries {
            patterns.check_bytes(prefix.len() + host.len())?;
        }
        let keys: Vec<String> = queries.iter().map(|(p, _)| format!("{p}{host}")).collect();
        // What the kept sets answer; the rest is asked (and fetched to keep
        // where it may be kept).
        let plans: Vec<PathSet> = queries
            .iter()
            .zip(&keys)
            .map(|((_, server), key)| cache.path_set(*server, key, &patterns, ticket))
            .collect();
        let mut answers: Vec<Option<bool>> = plans
            .iter()
            .map(|plan| match plan {
                PathSet::Answer(answer) => Some(*answer),
                PathSet::Ask | PathSet::AskAndFetch => None,
            })
            .collect();
        let fetch = |i: usize| plans[i] == PathSet::AskAndFetch;
        let mut prefetched = None;
        let mut servers: Vec<usize> = (0..queries.len())
            .filter(|&i| answers[i].is_none())
            .map(|i| queries[i].1)
            .collect();
        servers.sort_unstable();
        servers.dedup();
        for server in servers {
            let on_server: Vec<usize> = (0..queries.len())
                .filter(|&i| queries[i].1 == server && answers[i].is_none())
                .collect();
            let lookup = (server == dest.read && prefetched.is_none())
                .then(|| candidates::Candidates::new(host));
            let replies = clients[server]
                .query(|out| {
                    let mut n = 0;
                    for &i in &on_server {
                        let key: &[&[u8]] = &[keys[i].as_bytes()];
                        for (a, b) in patterns.iter() {
                            let pattern: &[&[u8]] = &[a.as_bytes(), b.as_bytes()];
                            encode_command_parts(out, &[&[b"SISMEMBER"], key, pattern]);
                            n += 1;
                        }
                        if fetch(i) {
                            n += path_sets::encode_fetch(keys[i].as_bytes(), with_ttls, out);
                        }
                    }
                    if let Some(cands) = &lookup {
                        n += lookup::encode_lookup(&dest.prefix, host, cands, with_ttls, out);
                    }
                    n
                })
                .await?;
            let mut replies = replies.into_iter();
            for &i in &on_server {
                // Take this query's replies in full, so the next ones stay aligned.
                let mine: Vec<Reply> = replies.by_ref().take(patterns.len()).collect();
                answers[i] = Some(mine.contains(&Reply::Integer(1)));
                if fetch(i) {
                    let fetched: Vec<Reply> =
                        replies.by_ref().take(1 + usize::from(with_ttls)).collect();
                    if let Some((members, expires_in)) = path_sets::decode_fetch(&fetched) {
                        cache.put_path_set(server, &keys[i], members, expires_in, ticket);
                    }
                }
            }
            if let Some(cands) = lookup {
                let rest: Vec<Reply> = replies.collect();
                prefetched = Some(lookup::decode_lookup(&rest, &cands, with_ttls)?.into());
            }
        }
        // Every query is answered by now: kept, or asked.
        let answers: Vec<bool> = answers.into_iter().map(|a| a == Some(true)).collect();
        if evaluate(&route.condition, facts, &answers) {
            return Ok((dest, prefetched));
        }
    }
    Ok((&table.default, None))
}

/// Picks a backend uniformly at random among those not in the Redis dead set,
/// not flagged dead on this shard, and (when there is a choice) not already
/// tried for this request. A single backend is retried: with nothing else to
/// go to, another attempt is the only chance of an answer.
pub fn choose_backend(
    frontend: &Frontend,
    host: &str,
    dead: &DeadBackends,
    tried: &[usize],
) -> Option<usize> {
    let n = frontend.backend_count();
    // Most shards flag nothing: then no backend URL is decoded or looked up.
    let flags = !dead.is_empty();
    let is_live = |i: &usize| {
        !frontend.listed_dead(*i)
            && (n == 1 || !tried.contains(i))
            && (!flags || !dead.is_dead(host, frontend.backend(*i)))
    };
    if n == 1 {
        return Some(0).filter(is_live);
    }
    // Count, then walk to the chosen one: no list of candidates per request.
    match (0..n).filter(is_live).count() {
        0 => None,
        1 => (0..n).find(is_live),
        k => (0..n).filter(is_live).nth(fastrand::usize(..k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fe(n: usize, dead: Vec<usize>) -> Frontend {
        let urls: Vec<String> = (0..n).map(|i| format!("http://b{i}")).collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        Frontend::new("id", &urls, dead)
    }

    #[test]
    fn choice_skips_dead_and_tried() {
        let local = DeadBackends::default();
        local.flag("h", "http://b2", Duration::from_secs(60));
        for _ in 0..50 {
            assert_eq!(choose_backend(&fe(4, vec![0]), "h", &local, &[1]), Some(3));
        }
        assert_eq!(choose_backend(&fe(2, vec![0, 1]), "h", &local, &[]), None);
        assert_eq!(choose_backend(&fe(0, vec![]), "h", &local, &[]), None);
        assert_eq!(choose_backend(&fe(1, vec![]), "h", &local, &[0]), Some(0));
        assert_eq!(choose_backend(&fe(1, vec![0]), "h", &local, &[]), None);
        // A lone backend this shard flagged, for this host only.
        local.flag("h", "http://b0", Duration::from_secs(60));
        assert_eq!(choose_backend(&fe(1, vec![]), "h", &local, &[]), None);
        assert_eq!(choose_backend(&fe(1, vec![]), "g", &local, &[]), Some(0));
    }

    #[test]
    fn choice_is_spread() {
        let local = DeadBackends::default();
        let mut seen = [0; 3];
        for _ in 0..300 {
            seen[choose_backend(&fe(3, vec![]), "h", &local, &[]).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&c| c > 50), "{seen:?}");
    }
}

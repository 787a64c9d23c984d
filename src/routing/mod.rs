//! Routing: from a Host header to one backend. Hipache's lookup (candidates,
//! frontend lists, dead sets) in one pipelined round trip, the random choice
//! among live backends, and dead marking. Lopache route conditions come later.

pub mod candidates;
pub mod dead;
pub mod lookup;

pub use lookup::Frontend;

use crate::redis::{RedisClient, RedisError};
use dead::DeadBackends;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("{0}")]
    BadReply(#[from] lookup::LookupError),
}

/// Looks the host up: `Ok(None)` when no frontend matches.
pub async fn find_frontend(
    read: &RedisClient,
    prefix: &str,
    host: &str,
) -> Result<Option<Frontend>, RouteError> {
    let cands = candidates::candidates(host);
    let replies = read
        .query(|out| lookup::encode_lookup(prefix, host, &cands, out))
        .await?;
    Ok(lookup::decode_lookup(replies, &cands)?)
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
    let n = frontend.backends.len();
    let live: Vec<usize> = (0..n)
        .filter(|i| !frontend.dead.contains(i))
        .filter(|i| n == 1 || !tried.contains(i))
        .filter(|&i| !dead.is_dead(host, &frontend.backends[i]))
        .collect();
    match live.len() {
        0 => None,
        1 => Some(live[0]),
        k => Some(live[fastrand::usize(..k)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fe(n: usize, dead: Vec<usize>) -> Frontend {
        Frontend {
            key: "k".into(),
            identifier: "id".into(),
            backends: (0..n).map(|i| format!("http://b{i}")).collect(),
            dead,
        }
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

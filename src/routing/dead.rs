//! Dead backends: the shard's own memory of recent failures, and the marks
//! sent to Redis so that every proxy (and Hipache's health checker) learns of
//! them: `SADD`/`EXPIRE` on `dead:<host>` and a `PUBLISH dead` message.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::redis::codec::{encode_command, Reply};
use crate::redis::RedisClient;
use crate::{log_debug, log_warn};

/// An external health checker refreshes this key; while it is fresh, it owns
/// the dead sets and the proxy only publishes (Hipache's behaviour).
const HCHECKER_KEY: &[u8] = b"hchecker_ping";
const HCHECKER_FRESH_SECS: u64 = 30;
/// Above this many remembered entries, expired ones are swept on insert.
const SWEEP_THRESHOLD: usize = 1024;

/// Backends this shard saw fail, by requested host, then backend URL, with
/// the instant their flag runs out. Two levels so lookups borrow `&str`.
#[derive(Default)]
pub struct DeadBackends {
    until: RefCell<HashMap<String, Vec<(String, Instant)>>>,
}

impl DeadBackends {
    pub fn is_dead(&self, host: &str, url: &str) -> bool {
        let map = self.until.borrow();
        let Some(flags) = map.get(host) else {
            return false;
        };
        let now = Instant::now();
        flags.iter().any(|(u, t)| u == url && now < *t)
    }

    pub fn flag(&self, host: &str, url: &str, ttl: Duration) {
        let mut map = self.until.borrow_mut();
        let now = Instant::now();
        if map.len() > SWEEP_THRESHOLD {
            map.retain(|_, flags| {
                flags.retain(|(_, t)| *t > now);
                !flags.is_empty()
            });
        }
        let flags = map.entry(host.to_string()).or_default();
        flags.retain(|(u, t)| u != url && *t > now);
        flags.push((url.to_string(), crate::clock::after(now, ttl)));
    }
}

/// What is published about one dead backend.
#[derive(Debug, Clone)]
pub struct DeadMark {
    /// The requested host (the dead set is keyed by it, not by the matched key).
    pub host: String,
    pub url: String,
    /// 0-based among the frontend's backends.
    pub index: usize,
    pub count: usize,
}

impl DeadMark {
    /// `<host>;<backend url>;<index>;<backend count>`, Hipache's message.
    pub fn message(&self) -> String {
        format!("{};{};{};{}", self.host, self.url, self.index, self.count)
    }
}

/// Sends the mark to the write connection. Runs as its own task so the
/// response is never delayed by it; failures are logged, not retried.
pub async fn publish(write: RedisClient, prefix: String, mark: DeadMark, ttl: Duration) {
    let checker_running = match write.command(&[b"GET", HCHECKER_KEY]).await {
        Ok(Reply::BulkString(v)) => std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_some_and(is_fresh),
        _ => false,
    };
    let key = format!("{prefix}dead:{}", mark.host);
    let index = mark.index.to_string();
    let ttl_secs = ttl.as_secs().max(1).to_string();
    let message = mark.message();
    let result = write
        .query(|out| {
            let mut n = 1;
            if !checker_running {
                encode_command(out, &[b"SADD", key.as_bytes(), index.as_bytes()]);
                encode_command(out, &[b"EXPIRE", key.as_bytes(), ttl_secs.as_bytes()]);
                n += 2;
            }
            encode_command(out, &[b"PUBLISH", b"dead", message.as_bytes()]);
            n
        })
        .await;
    match result {
        Ok(replies) => {
            if let Some(Reply::Error(e)) = replies.iter().find(|r| matches!(r, Reply::Error(_))) {
                log_warn!("marking {} dead in redis failed: {e}", mark.url);
            } else {
                log_debug!("marked {} dead for {}", mark.url, mark.host);
            }
        }
        Err(e) => log_warn!("marking {} dead in redis failed: {e}", mark.url),
    }
}

fn is_fresh(ping: u64) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    now.saturating_sub(ping) < HCHECKER_FRESH_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_flags_expire() {
        let d = DeadBackends::default();
        d.flag("a", "http://x", Duration::from_secs(60));
        d.flag("a", "http://y", Duration::from_secs(0));
        assert!(d.is_dead("a", "http://x"));
        assert!(!d.is_dead("a", "http://y"));
        assert!(!d.is_dead("b", "http://x"));
    }

    #[test]
    fn message_format() {
        let m = DeadMark {
            host: "a.com".into(),
            url: "http://1.2.3.4:80".into(),
            index: 1,
            count: 3,
        };
        assert_eq!(m.message(), "a.com;http://1.2.3.4:80;1;3");
        assert!(is_fresh(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs()
                - 5
        ));
        assert!(!is_fresh(1000));
    }
}

//! Dead backends: the shard's own memory of recent failures, and the marks
//! sent to Redis so that every proxy (and Hipache's health checker) learns of
//! them: `SADD`/`EXPIRE` on `dead:<host>` and a `PUBLISH dead` message.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::redis::codec::Reply;
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
    /// Forgets expired flags and the hosts left with none (run by the shard
    /// once a second); returns how many flags are kept.
    pub fn sweep(&self) -> usize {
        let now = crate::clock::now();
        let mut map = self.until.borrow_mut();
        map.retain(|_, flags| {
            flags.retain(|(_, t)| *t > now);
            !flags.is_empty()
        });
        map.values().map(Vec::len).sum()
    }

    /// No flag at all (the usual case): nothing to look up per backend.
    pub fn is_empty(&self) -> bool {
        self.until.borrow().is_empty()
    }

    pub fn is_dead(&self, host: &str, url: &str) -> bool {
        let map = self.until.borrow();
        let Some(flags) = map.get(host) else {
            return false;
        };
        let now = crate::clock::now();
        flags.iter().any(|(u, t)| u == url && now < *t)
    }

    /// Flags `url` dead for `host` for `ttl`. False when it already was:
    /// requests that were in flight to it when it failed need not tell Redis
    /// again (four hung requests sent four marks).
    pub fn flag(&self, host: &str, url: &str, ttl: Duration) -> bool {
        let mut map = self.until.borrow_mut();
        let now = crate::clock::now();
        if map.len() > SWEEP_THRESHOLD {
            map.retain(|_, flags| {
                flags.retain(|(_, t)| *t > now);
                !flags.is_empty()
            });
        }
        let flags = map.entry(host.to_string()).or_default();
        let was_flagged = flags.iter().any(|(u, t)| u == url && *t > now);
        flags.retain(|(u, t)| u != url && *t > now);
        flags.push((url.to_string(), crate::clock::after(now, ttl)));
        !was_flagged
    }
}

/// What is published about one dead backend.
#[derive(Debug, Clone)]
pub struct DeadMark {
    /// The requested host (the dead set is keyed by it, not by the matched key).
    pub host: String,
    /// The frontend list the backend was chosen from, prefixed
    /// (`frontend:*.example.com` for a wildcard match).
    pub list_key: String,
    pub url: String,
    /// 0-based among the frontend's backends, when it was chosen.
    pub index: usize,
    /// How many backends the list had at lookup time.
    pub count: usize,
}

/// The start of both scripts: `index` is ARGV[2] if the list (KEYS[1])
/// still holds the URL (ARGV[1]) there, else the URL's current index, else
/// the script returns -1; a write Redis without the list keeps ARGV[2].
macro_rules! find_index {
    () => {
        r#"
local list = redis.call('LRANGE', KEYS[1], 1, 1000)
local index = tonumber(ARGV[2])
if #list > 0 and list[index + 1] ~= ARGV[1] then
  index = nil
  for i, url in ipairs(list) do
    if url == ARGV[1] then
      index = i - 1
      break
    end
  end
  if index == nil then
    return -1
  end
end"#
    };
}

/// The mark, in one atomic step on the write Redis. Hipache's schema marks
/// by list index, but the list may have changed since the lookup (a deploy
/// swapping backends with LSET, a rotation with LREM/RPUSH): the index is
/// checked to still hold the URL that failed, else the URL's current index
/// is used, else (no longer listed) nothing is marked. A write Redis that
/// does not hold the list at all cannot check: the mark goes by index, as
/// Hipache's does. KEYS: the list, the dead set. ARGV: url, index, ttl,
/// host, "1" when an external health checker owns the dead sets (then only
/// the message is published), the backend count at lookup time, "0" to
/// skip the message (a health check refreshing a mark it already made).
const MARK_SCRIPT: &str = concat!(
    find_index!(),
    r#"
local count = #list
if count == 0 then
  count = tonumber(ARGV[6])
end
if ARGV[5] ~= '1' then
  redis.call('SADD', KEYS[2], index)
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
if ARGV[7] ~= '0' then
  redis.call('PUBLISH', 'dead', ARGV[4] .. ';' .. ARGV[1] .. ';' .. index .. ';' .. count)
end
return index
"#
);

/// A backend is healthy again: its index (checked as for marks) leaves the
/// dead set. KEYS: the list, the dead set. ARGV: url, index.
const ALIVE_SCRIPT: &str = concat!(
    find_index!(),
    r#"
redis.call('SREM', KEYS[2], index)
return index
"#
);

/// Where a mark goes: the keyspace's prefix and the write connection.
pub struct MarkTarget<'a> {
    pub write: &'a RedisClient,
    pub prefix: &'a str,
}

/// Marks a backend dead from a health check: as a proxy's mark, without
/// asking about an external checker (lopache's checker is one); `announce`
/// publishes on the `dead` channel (on a state change, not on a refresh).
pub async fn mark_checked_dead(
    to: MarkTarget<'_>,
    mark: &DeadMark,
    ttl: Duration,
    announce: bool,
) -> Result<i64, String> {
    run_mark(to, mark, ttl, false, announce).await
}

/// Takes a backend's index out of its dead set (a health check passed).
pub async fn mark_alive(to: MarkTarget<'_>, mark: &DeadMark) -> Result<i64, String> {
    eval(to, ALIVE_SCRIPT, mark, &[]).await
}

async fn run_mark(
    to: MarkTarget<'_>,
    mark: &DeadMark,
    ttl: Duration,
    checker_running: bool,
    announce: bool,
) -> Result<i64, String> {
    let ttl_secs = ttl.as_secs().max(1).to_string();
    let checker = if checker_running { "1" } else { "0" };
    let count = mark.count.to_string();
    let announce = if announce { "1" } else { "0" };
    let more: [&[u8]; 5] = [
        ttl_secs.as_bytes(),
        mark.host.as_bytes(),
        checker.as_bytes(),
        count.as_bytes(),
        announce.as_bytes(),
    ];
    eval(to, MARK_SCRIPT, mark, &more).await
}

/// Runs one of the scripts above: KEYS the list and the dead set, ARGV the
/// URL, the index, then `more`.
async fn eval(
    to: MarkTarget<'_>,
    script: &str,
    mark: &DeadMark,
    more: &[&[u8]],
) -> Result<i64, String> {
    let dead_key = format!("{}dead:{}", to.prefix, mark.host);
    let index = mark.index.to_string();
    let mut args: Vec<&[u8]> = vec![
        b"EVAL",
        script.as_bytes(),
        b"2",
        mark.list_key.as_bytes(),
        dead_key.as_bytes(),
        mark.url.as_bytes(),
        index.as_bytes(),
    ];
    args.extend_from_slice(more);
    integer_reply(to.write.command(&args).await)
}

fn integer_reply(reply: Result<Reply, crate::redis::RedisError>) -> Result<i64, String> {
    match reply {
        Ok(Reply::Integer(i)) => Ok(i),
        Ok(Reply::Error(e)) => Err(e.to_string()),
        Ok(other) => Err(format!("unexpected {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Sends the mark to the write connection. Runs as its own task so the
/// response is never delayed by it; failures are logged, not retried.
/// False: the write Redis did not take it.
pub async fn publish(write: RedisClient, prefix: String, mark: DeadMark, ttl: Duration) -> bool {
    let checker_running = match write.command(&[b"GET", HCHECKER_KEY]).await {
        Ok(Reply::BulkString(v)) => std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_some_and(is_fresh),
        _ => false,
    };
    let to = MarkTarget {
        write: &write,
        prefix: &prefix,
    };
    match run_mark(to, &mark, ttl, checker_running, true).await {
        Ok(-1) => {
            log_debug!(
                "{} is no longer listed for {}: not marked",
                mark.url,
                mark.host
            )
        }
        Ok(i) => log_debug!("marked {} (index {i}) dead for {}", mark.url, mark.host),
        Err(e) => {
            log_warn!("marking {} dead in redis failed: {e}", mark.url);
            return false;
        }
    }
    true
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
    fn flagging_twice_reports_the_first_only() {
        let d = DeadBackends::default();
        assert!(d.flag("a", "http://x", Duration::from_secs(60)));
        assert!(!d.flag("a", "http://x", Duration::from_secs(60)));
        assert!(d.flag("a", "http://y", Duration::from_secs(60)));
        assert!(d.flag("a", "http://z", Duration::ZERO));
        assert!(
            d.flag("a", "http://z", Duration::ZERO),
            "an expired flag is flagged anew"
        );
        assert_eq!(d.sweep(), 2, "the expired flag goes");
        assert!(d.flag("b", "http://x", Duration::ZERO));
        assert_eq!(d.sweep(), 2, "and so does a host left with none");
        assert!(!d.until.borrow().contains_key("b"));
    }

    #[test]
    fn checker_freshness() {
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

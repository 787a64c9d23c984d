//! Certificates held in Redis, PlanB's way: a HASH `tls:<name>` (never
//! prefixed, like `hchecker_ping`) with fields `certificate` and `key` (PEM).
//! Each shard caches what it found, including "nothing", for
//! `https.redis_certificates_ttl` seconds, so a certificate changed in Redis
//! is served within that time and a handshake costs at most one lookup.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::{certified_key_from_pem, server_config, Preset, SniResolver};
use crate::redis::codec::{encode_command, strings, Reply};
use crate::redis::RedisClient;
use crate::{log_debug, log_warn};

/// Above this many cached names, expired ones are swept on insert.
const SWEEP_THRESHOLD: usize = 10_000;

/// What Redis held for one name (`None`: nothing usable), and when it was asked.
type Entry = (Option<Arc<ServerConfig>>, Instant);

pub struct RedisCertCache {
    ttl: Duration,
    /// By SNI name.
    entries: RefCell<HashMap<String, Entry>>,
}

impl RedisCertCache {
    pub fn new(ttl: Duration) -> Self {
        RedisCertCache {
            ttl,
            entries: RefCell::new(HashMap::new()),
        }
    }

    /// A server config for `name` from `tls:<name>`, else `tls:*.<parent>`;
    /// `None` when Redis holds neither (or cannot be reached).
    pub async fn lookup(
        &self,
        redis: &RedisClient,
        name: &str,
        preset: Preset,
    ) -> Option<Arc<ServerConfig>> {
        if let Some((config, at)) = self.entries.borrow().get(name) {
            if at.elapsed() < self.ttl {
                return config.clone();
            }
        }
        let exact = format!("tls:{name}");
        let wildcard = name
            .split_once('.')
            .map(|(_, parent)| format!("tls:*.{parent}"));
        let replies = redis
            .query(|out| {
                encode_command(out, &[b"HGETALL", exact.as_bytes()]);
                if let Some(w) = &wildcard {
                    encode_command(out, &[b"HGETALL", w.as_bytes()]);
                }
                1 + usize::from(wildcard.is_some())
            })
            .await;
        let replies = match replies {
            Ok(r) => r,
            Err(e) => {
                // Not cached: the next handshake tries again.
                log_debug!("certificate lookup for {name} failed: {e}");
                return None;
            }
        };
        let found = replies.into_iter().find_map(|r| certificate(r, name));
        let config = found.and_then(|key| {
            server_config(SniResolver::default().with_default(Some(key)), preset).ok()
        });
        let mut entries = self.entries.borrow_mut();
        if entries.len() > SWEEP_THRESHOLD {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        entries.insert(name.to_string(), (config.clone(), Instant::now()));
        config
    }
}

/// The certificate in one HGETALL reply, if it holds a usable pair.
fn certificate(reply: Reply, name: &str) -> Option<Arc<CertifiedKey>> {
    let fields = strings(&reply)?;
    let get = |field: &[u8]| {
        fields
            .chunks(2)
            .find(|kv| kv[0] == field)
            .and_then(|kv| kv.get(1))
    };
    let (cert, key) = (get(b"certificate")?, get(b"key")?);
    match certified_key_from_pem(cert, key) {
        Ok(k) => Some(k),
        Err((_, e)) => {
            log_warn!("certificate for {name} in Redis is unusable: {e}");
            None
        }
    }
}

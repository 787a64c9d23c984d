//! Certificates held in Redis, PlanB's way: a HASH `tls:<name>` (never
//! prefixed, like `hchecker_ping`) with fields `certificate` and `key` (PEM),
//! or `tls:*.<parent>` for a wildcard.
//!
//! Each shard caches by the Redis key that answered, not by the name a
//! client asked for: a flood of random `<x>.wild.example` names shares the
//! one server config built from `tls:*.wild.example` (about 38 KB), where a
//! config per name took a worker to 928 MB. Both maps are LRU-bounded, and
//! entries (including "nothing usable") live `https.redis_certificates_ttl`
//! seconds, so a certificate changed in Redis is served within that time. A
//! name whose wildcard is already cached costs one `EXISTS` for its exact key.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::{certified_key_from_pem, server_config, Preset, SniResolver};
use crate::lru::Lru;
use crate::redis::codec::{encode_command, strings, Reply};
use crate::redis::RedisClient;
use crate::{log_debug, log_warn};

/// What every certificate key starts with (there is no keyspace prefix).
pub const KEY_PREFIX: &str = "tls:";

/// The Redis keys that may hold the certificate for `name`, in the order
/// they are tried: `tls:<name>`, then `tls:*.<parent>` when `name` has one.
pub fn cert_keys(name: &str) -> (String, Option<String>) {
    let wildcard = name
        .split_once('.')
        .filter(|(_, parent)| !parent.is_empty())
        .map(|(_, parent)| format!("{KEY_PREFIX}*.{parent}"));
    (format!("{KEY_PREFIX}{name}"), wildcard)
}

/// A cached value and when it was fetched.
type Fresh<T> = (T, Instant);

/// What the cache knows of one Redis key's certificate.
#[derive(Clone)]
enum KeyCert {
    /// The server config built from it.
    Config(Arc<ServerConfig>),
    /// The key holds no usable certificate.
    Unusable,
}

/// What the cache knows of one SNI name.
#[derive(Clone)]
enum NameAnswer {
    /// This Redis key answers for it.
    Key(Rc<str>),
    /// No key does.
    NoKey,
}

pub struct RedisCertCache {
    ttl: Duration,
    /// By Redis key: the config its certificate gives.
    configs: RefCell<Lru<Rc<str>, Fresh<KeyCert>>>,
    /// By SNI name: the key that answered for it.
    names: RefCell<Lru<String, Fresh<NameAnswer>>>,
    /// Bumped by [`clear`](Self::clear): a lookup that was under way when a
    /// `tls:` key changed keeps its answer for its own handshake but does not
    /// store it (as the route cache's ticket, `routing::cache`).
    epoch: std::cell::Cell<u64>,
}

impl RedisCertCache {
    /// A cache of at most `max_certificates` configs (and ten times as many
    /// names) per shard, each kept `ttl`.
    pub fn new(ttl: Duration, max_certificates: usize) -> Self {
        RedisCertCache {
            ttl,
            configs: RefCell::new(Lru::new(max_certificates)),
            names: RefCell::new(Lru::new(max_certificates.saturating_mul(10))),
            epoch: std::cell::Cell::new(0),
        }
    }

    fn config_for(&self, key: &Rc<str>) -> Option<KeyCert> {
        let mut configs = self.configs.borrow_mut();
        let (config, at) = configs.get(key)?;
        (at.elapsed() < self.ttl).then(|| config.clone())
    }

    /// A server config for `name` from `tls:<name>`, else `tls:*.<parent>`;
    /// `None` when Redis holds neither (or cannot be reached).
    pub async fn lookup(
        &self,
        redis: &RedisClient,
        name: &str,
        preset: Preset,
    ) -> Option<Arc<ServerConfig>> {
        let known = self
            .names
            .borrow_mut()
            .get(name)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(key, _)| key.clone());
        match known {
            Some(NameAnswer::NoKey) => return None,
            Some(NameAnswer::Key(key)) => match self.config_for(&key) {
                Some(KeyCert::Config(config)) => return Some(config),
                Some(KeyCert::Unusable) => return None,
                None => {}
            },
            None => {}
        }
        let ticket = self.epoch.get();
        let (exact, wildcard) = cert_keys(name);
        let wildcard: Option<Rc<str>> = wildcard.map(Into::into);
        // The wildcard's config is at hand: only the exact key's existence
        // is in question, which is one small command instead of two hashes.
        if let Some(w) = &wildcard {
            if let Some(KeyCert::Config(config)) = self.config_for(w) {
                match redis.command(&[b"EXISTS", exact.as_bytes()]).await {
                    Ok(Reply::Integer(0)) => {
                        self.remember(ticket, name, NameAnswer::Key(w.clone()));
                        return Some(config);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        log_debug!("certificate lookup for {name} failed: {e}");
                        return None;
                    }
                }
            }
        }
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
        let keys = std::iter::once(Rc::<str>::from(exact)).chain(wildcard);
        for (key, reply) in keys.zip(replies) {
            if !strings(&reply).is_some_and(|fields| !fields.is_empty()) {
                continue; // no such key (or not a hash)
            }
            let cert = match self.config_for(&key) {
                Some(cached) => cached,
                None => {
                    let built = certificate(&reply, &key).and_then(|certified| {
                        server_config(SniResolver::default().with_default(Some(certified)), preset)
                            .ok()
                    });
                    let cert = built.map_or(KeyCert::Unusable, KeyCert::Config);
                    if self.epoch.get() == ticket {
                        let entry = (cert.clone(), Instant::now());
                        self.configs.borrow_mut().insert(key.clone(), entry);
                    }
                    cert
                }
            };
            if let KeyCert::Config(config) = cert {
                self.remember(ticket, name, NameAnswer::Key(key));
                return Some(config);
            }
        }
        self.remember(ticket, name, NameAnswer::NoKey);
        None
    }

    /// Forgets everything: a `tls:` key changed (reported by client
    /// tracking, see `redis::tracking`).
    pub fn clear(&self) {
        self.epoch.set(self.epoch.get().wrapping_add(1));
        self.configs.borrow_mut().clear();
        self.names.borrow_mut().clear();
    }

    /// Certificates kept now (the LRU bounds them).
    pub fn len(&self) -> usize {
        self.configs.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores what answers for `name`, unless a `tls:` key changed since
    /// the lookup took `ticket`.
    fn remember(&self, ticket: u64, name: &str, key: NameAnswer) {
        if self.epoch.get() != ticket {
            return;
        }
        self.names
            .borrow_mut()
            .insert(name.to_string(), (key, Instant::now()));
    }
}

/// The certificate in one HGETALL reply, if it holds a usable pair. An
/// unusable one is reported when its config is built: once per key and TTL.
fn certificate(reply: &Reply, key: &str) -> Option<Arc<CertifiedKey>> {
    let fields = strings(reply)?;
    let get = |field: &[u8]| {
        fields
            .chunks(2)
            .find(|kv| kv[0] == field)
            .and_then(|kv| kv.get(1))
    };
    let (cert, pem_key) = (get(b"certificate")?, get(b"key")?);
    match certified_key_from_pem(cert, pem_key) {
        Ok(k) => Some(k),
        Err((_, e)) => {
            log_warn!("certificate in Redis {key} is unusable: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cert_keys;

    #[test]
    fn keys_for_a_name() {
        assert_eq!(
            cert_keys("shop.wild.example"),
            (
                "tls:shop.wild.example".into(),
                Some("tls:*.wild.example".into())
            )
        );
        assert_eq!(cert_keys("localhost"), ("tls:localhost".into(), None));
        assert_eq!(cert_keys("odd."), ("tls:odd.".into(), None));
    }
}

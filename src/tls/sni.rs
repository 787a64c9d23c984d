//! Certificate choice by SNI: the exact name, then the wildcard `*.<parent>`,
//! then the listener's default certificate. A handshake that matches nothing
//! and has no default is refused by rustls with an alert.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::load_certified_key;
use super::LoadError;
use crate::files::Files;

#[derive(Debug, Default, Clone)]
pub struct SniResolver {
    /// By lowercase host name.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    pub fn with_default(mut self, default: Option<Arc<CertifiedKey>>) -> Self {
        self.default = default;
        self
    }

    pub fn add(&mut self, name: &str, key: Arc<CertifiedKey>) {
        let name = name.to_ascii_lowercase();
        match name.strip_prefix("*.") {
            Some(parent) => self.wildcard.insert(parent.to_string(), key),
            None => self.exact.insert(name, key),
        };
    }

    /// Loads every `<name>.crt` with its `<name>.key` from `dir`.
    pub fn load_dir(files: &mut Files, dir: &Path) -> Result<SniResolver, LoadError> {
        let key = "https.certificates_dir";
        let entries = files
            .read_dir(dir)
            .map_err(|e| LoadError::new(key, format!("cannot read {}: {e}", dir.display())))?;
        let mut resolver = SniResolver::default();
        for path in entries {
            let (Some(name), Some("crt")) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|e| e.to_str()),
            ) else {
                continue;
            };
            let key_path = path.with_extension("key");
            let pair = load_certified_key(
                files,
                &path,
                &key_path,
                &format!("{key} ({name}.crt)"),
                &format!("{key} ({name}.key)"),
            )?;
            resolver.add(name, pair);
        }
        Ok(resolver)
    }

    /// A certificate file is named exactly `name` (lowercase).
    pub fn has_exact(&self, name: &str) -> bool {
        self.exact.contains_key(name)
    }

    /// The certificate for `server_name` (already lowercase or not).
    pub fn lookup(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = server_name.and_then(|name| {
            let name = name.to_ascii_lowercase();
            if let Some(k) = self.exact.get(&name) {
                return Some(k.clone());
            }
            let (_, parent) = name.split_once('.')?;
            self.wildcard.get(parent).cloned()
        });
        found.or_else(|| self.default.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.lookup(hello.server_name())
    }
}

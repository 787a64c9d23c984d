//! TLS termination: certificates are read and checked when the config is
//! loaded, and each HTTPS listener gets one `Arc<rustls::ServerConfig>` that
//! every shard shares (built once, on the main thread). Crypto is rustls on
//! the `ring` provider.
//!
//! `https://` backends are verified against the OS trust store plus
//! `server.backend_ca`.

pub mod accept;
pub mod redis_certs;
mod sni;
pub mod stream;

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::files::Files;
pub use sni::SniResolver;

/// A certificate, key or TLS setting that cannot be used. `setting` names the
/// config key it came from (the caller says which), so the config's
/// validation can report it like any other key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct LoadError {
    pub setting: String,
    pub message: String,
}

impl LoadError {
    fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        LoadError {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `https.preset`: which protocol versions are offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// TLS 1.3 only.
    Modern,
    /// TLS 1.2 and 1.3, forward-secret AEAD suites only (rustls' defaults).
    Intermediate,
}

impl Preset {
    pub fn parse(name: &str) -> Option<Preset> {
        match name {
            "modern" => Some(Preset::Modern),
            "intermediate" => Some(Preset::Intermediate),
            _ => None,
        }
    }

    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static MODERN: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        static INTERMEDIATE: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS12, &rustls::version::TLS13];
        match self {
            Preset::Modern => &MODERN,
            Preset::Intermediate => &INTERMEDIATE,
        }
    }
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain and private key (PKCS#8, PKCS#1 or SEC1)
/// and checks that they belong together. Errors name `cert_key` / `key_key`.
pub fn load_certified_key(
    files: &mut Files,
    cert_path: &Path,
    key_path: &Path,
    cert_key: &str,
    key_key: &str,
) -> Result<Arc<CertifiedKey>, LoadError> {
    load_certified_key_with_chain(files, cert_path, key_path, &[], cert_key, key_key)
}

/// [`load_certified_key`], with the certificates of `chain` (PEM files,
/// `https.chain`) sent after the certificate file's own.
pub fn load_certified_key_with_chain(
    files: &mut Files,
    cert_path: &Path,
    key_path: &Path,
    chain: &[std::path::PathBuf],
    cert_key: &str,
    key_key: &str,
) -> Result<Arc<CertifiedKey>, LoadError> {
    let mut cert_pem = files.read(cert_path).map_err(|e| {
        LoadError::new(
            cert_key,
            format!("cannot read {}: {e}", cert_path.display()),
        )
    })?;
    for (i, path) in chain.iter().enumerate() {
        let more = files.read(path).map_err(|e| {
            LoadError::new(
                format!("https.chain[{i}]"),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        if CertificateDer::pem_slice_iter(&more).next().is_none() {
            return Err(LoadError::new(
                format!("https.chain[{i}]"),
                format!("{}: no PEM certificate", path.display()),
            ));
        }
        cert_pem.push(b'\n');
        cert_pem.extend_from_slice(&more);
    }
    let key_pem = files.read(key_path).map_err(|e| {
        LoadError::new(
            key_key,
            format!("cannot read a private key from {}: {e}", key_path.display()),
        )
    })?;
    certified_key_from_pem(&cert_pem, &key_pem).map_err(|(part, message)| match part {
        PemPart::Cert => LoadError::new(cert_key, format!("{}: {message}", cert_path.display())),
        PemPart::Key => LoadError::new(key_key, format!("{message} ({cert_key})")),
    })
}

/// Which half of a certificate/key pair a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemPart {
    Cert,
    Key,
}

/// A certificate chain and its private key from PEM bytes, checked to match.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, (PemPart, String)> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| (PemPart::Cert, format!("invalid PEM: {e}")))?;
    if chain.is_empty() {
        return Err((PemPart::Cert, "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| (PemPart::Key, format!("cannot read a private key: {e}")))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| (PemPart::Key, format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|_| (PemPart::Key, "does not match the certificate".to_string()))?;
    Ok(Arc::new(certified))
}

/// The client config for `https://` backends: the OS trust store (when one
/// is installed) plus the PEM certificates in `backend_ca`, if given.
pub fn backend_client_config(
    files: &mut Files,
    backend_ca: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, LoadError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = backend_ca {
        let key = "server.backend_ca";
        let pem = files
            .read(path)
            .map_err(|e| LoadError::new(key, format!("cannot read {}: {e}", path.display())))?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| LoadError::new(key, format!("cannot read {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(LoadError::new(
                key,
                format!("{} holds no certificate", path.display()),
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| LoadError::new(key, format!("unusable CA certificate: {e}")))?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(Preset::Intermediate.versions())
        .map_err(|e| LoadError::new("server.backend_ca", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The shared server config for one listener.
pub fn server_config(
    resolver: SniResolver,
    preset: Preset,
) -> Result<Arc<ServerConfig>, LoadError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(preset.versions())
        .map_err(|e| LoadError::new("https.preset", e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Resumption: stateless tickets (TLS 1.2 and 1.3) besides the default
    // in-memory session cache.
    config.ticketer = rustls::crypto::ring::Ticketer::new()
        .map_err(|e| LoadError::new("https", format!("cannot create a session ticketer: {e}")))?;
    Ok(Arc::new(config))
}

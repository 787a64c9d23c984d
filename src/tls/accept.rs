//! The TLS handshake: read the ClientHello first (rustls' `Acceptor`), pick
//! the server config for its name (files, then Redis when
//! `https.redis_certificates` is on, then the listener's default), then drive
//! the rest of the handshake here and hand the connection to `TlsStream`.

use std::io;
use std::sync::Arc;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::server::Acceptor;
use rustls::{ServerConfig, ServerConnection};

use super::redis_certs::RedisCertCache;
use super::stream::TlsStream;
use super::{Preset, SniResolver};
use crate::redis::RedisClient;

/// What a TLS listener needs to choose a certificate per handshake.
pub struct TlsListener {
    /// The listener's config: files by name, then its default certificate.
    pub config: Arc<ServerConfig>,
    /// The file certificates by name, to know when Redis must be asked.
    pub names: SniResolver,
    pub preset: Preset,
    /// `https.redis_certificates`.
    pub from_redis: bool,
}

const READ_CHUNK: usize = 16 * 1024;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

async fn read_some(tcp: &mut TcpStream, buf: Vec<u8>) -> io::Result<(usize, Vec<u8>)> {
    let (res, buf) = tcp.read(buf).await;
    let n = res?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed during the handshake",
        ));
    }
    Ok((n, buf))
}

async fn flush(tcp: &mut TcpStream, conn: &mut ServerConnection) -> io::Result<()> {
    while conn.wants_write() {
        let mut out = Vec::new();
        conn.write_tls(&mut out)?;
        let (res, _) = tcp.write_all(out).await;
        res?;
    }
    Ok(())
}

/// Sends rustls' alert for a refused handshake; returns the error to report.
async fn refuse(
    tcp: &mut TcpStream,
    mut alert: rustls::server::AcceptedAlert,
    e: rustls::Error,
) -> io::Error {
    let mut out = Vec::new();
    let _ = alert.write_all(&mut out);
    let _ = tcp.write_all(out).await;
    invalid(e)
}

/// Where a name without a certificate file is looked up when the listener
/// takes certificates from Redis: the routing Redis and the shard's cache.
pub struct RedisCerts<'a> {
    pub redis: &'a RedisClient,
    pub cache: &'a RedisCertCache,
}

/// Completes a handshake, choosing the certificate after seeing the name.
pub async fn accept(
    mut tcp: TcpStream,
    listener: &TlsListener,
    certs: RedisCerts<'_>,
) -> io::Result<TlsStream> {
    let mut acceptor = Acceptor::default();
    let mut buf = vec![0u8; READ_CHUNK];
    let accepted = loop {
        let (n, b) = read_some(&mut tcp, buf).await?;
        buf = b;
        let mut input = &buf[..n];
        while !input.is_empty() {
            // Taking nothing would loop forever: only a full buffer does it.
            if acceptor.read_tls(&mut input)? == 0 {
                return Err(io::Error::other("ClientHello too large"));
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => break accepted,
            Ok(None) => continue,
            Err((e, alert)) => return Err(refuse(&mut tcp, alert, e).await),
        }
    };
    let name = accepted
        .client_hello()
        .server_name()
        .map(str::to_ascii_lowercase);
    let config = choose_config(&certs, listener, name.as_deref()).await;
    let mut conn = match accepted.into_connection(config) {
        Ok(c) => c,
        Err((e, alert)) => return Err(refuse(&mut tcp, alert, e).await),
    };
    // The rest of the handshake: write what rustls has, read what it wants.
    loop {
        flush(&mut tcp, &mut conn).await?;
        if !conn.is_handshaking() {
            break;
        }
        let (n, b) = read_some(&mut tcp, buf).await?;
        buf = b;
        let mut input = &buf[..n];
        while !input.is_empty() {
            let taken = conn.read_tls(&mut input)?;
            if let Err(e) = conn.process_new_packets() {
                let _ = flush(&mut tcp, &mut conn).await;
                return Err(invalid(e));
            }
            if taken == 0 {
                // rustls takes nothing after the peer's close_notify.
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
    Ok(TlsStream::new(tcp, conn))
}

/// Files by exact name first; then Redis (exact, then wildcard); then the
/// listener's config, which covers wildcard files and the default.
async fn choose_config(
    certs: &RedisCerts<'_>,
    listener: &TlsListener,
    name: Option<&str>,
) -> Arc<ServerConfig> {
    if let (Some(name), true) = (name, listener.from_redis) {
        if !listener.names.has_exact(name) {
            let found = certs.cache.lookup(certs.redis, name, listener.preset);
            if let Some(config) = found.await {
                return config;
            }
        }
    }
    listener.config.clone()
}

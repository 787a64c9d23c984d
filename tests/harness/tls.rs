//! A throwaway PKI (a CA and leaf certificates made with rcgen at test time)
//! and a rustls client that verifies against it.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::{RawConn, WAIT};

pub struct Pki {
    ca: Issuer<'static, KeyPair>,
    pub ca_der: CertificateDer<'static>,
    pub ca_pem: String,
}

/// A leaf certificate and key, PEM-encoded, with its DER for comparisons.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Leaf {
    /// Writes `<dir>/<stem>.crt` and `<dir>/<stem>.key`.
    pub fn write(&self, dir: &Path, stem: &str) {
        std::fs::write(dir.join(format!("{stem}.crt")), &self.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), &self.key_pem).unwrap();
    }
}

impl Pki {
    pub fn new() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "lopache test CA");
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_der: cert.der().clone(),
            ca_pem: cert.pem(),
            ca: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` (the first is also the common name).
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_for_key(names, KeyPair::generate().unwrap())
    }

    /// A leaf for `names` certifying `key` (e.g. an RSA key made by openssl).
    pub fn leaf_for_key(&self, names: &[&str], key: KeyPair) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client trusting only this CA, offering `versions`.
    pub fn client(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

pub type TlsConn = RawConn<StreamOwned<ClientConnection, TcpStream>>;

/// Connects with SNI `name` and completes the handshake; Err on failure.
pub fn connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsConn, rustls::Error> {
    connect_over(TcpStream::connect(addr).unwrap(), name, config)
}

/// The handshake over a connection the caller opened (and may have written
/// to already, e.g. a PROXY protocol header).
pub fn connect_over(
    tcp: TcpStream,
    name: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsConn, rustls::Error> {
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let conn = ClientConnection::new(config, server_name)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
    }
    Ok(RawConn::over(stream))
}

/// The certificate the server presented.
pub fn peer_cert(conn: &TlsConn) -> CertificateDer<'static> {
    conn.stream.conn.peer_certificates().expect("a certificate")[0]
        .clone()
        .into_owned()
}

/// An HTTPS backend: answers every request with 200, `body`, and an
/// `x-sni` header naming the server name the client asked for. Counts
/// accepted connections.
pub struct TlsBackend {
    pub addr: SocketAddr,
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl TlsBackend {
    pub fn start(leaf: &Leaf, body: &'static str) -> TlsBackend {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::PrivateKeyDer;
        use std::io::{Read, Write};
        let chain = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = connections.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let config = config.clone();
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    loop {
                        head.clear();
                        while !head.ends_with(b"\r\n\r\n") {
                            match tls.read(&mut byte) {
                                Ok(1) => head.push(byte[0]),
                                _ => return,
                            }
                        }
                        let sni = tls.conn.server_name().unwrap_or("-").to_string();
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nx-sni: {sni}\r\n\r\n{body}",
                            body.len()
                        );
                        if tls.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        TlsBackend { addr, connections }
    }
}

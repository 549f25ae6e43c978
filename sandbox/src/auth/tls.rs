//! The API server's TLS: a cluster CA generated at start (as EKS generates
//! one per cluster and returns it in `DescribeCluster`'s
//! `certificateAuthority.data`), a serving certificate for `127.0.0.1` and
//! `localhost` signed by it, and the accept loop that serves an axum router
//! over TLS (HTTP/1.1, upgrades and streaming watches included).
//!
//! Clients verify the serving certificate against the CA exactly as they
//! verify a real cluster's: Go (kubectl) requires the address in the
//! certificate's subjectAltName, so the IP SAN is not optional.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the cluster CA or serving certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("building the TLS server configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The cluster CA and the server configuration it signs.
#[derive(Clone)]
pub struct ClusterTls {
    /// The CA certificate, PEM (what `certificateAuthority.data` carries,
    /// base64-encoded once more).
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls").finish_non_exhaustive()
    }
}

/// A new CA (`CN=kubernetes`, as EKS's) and a serving certificate for the
/// loopback API server.
pub fn generate() -> Result<ClusterTls, TlsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "kubernetes");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut srv = CertificateParams::new(vec![
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
    ])?;
    srv.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    srv.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    srv.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    srv.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let srv_cert = srv.signed_by(&key, &issuer)?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![
                CertificateDer::from(srv_cert.der().to_vec()),
                CertificateDer::from(ca_cert.der().to_vec()),
            ],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    // HTTP/1.1 only: every Kubernetes client falls back to it, and watches
    // stream as chunked responses.
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ClusterTls {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    })
}

/// A TLS client configuration trusting only `ca_pem` (for the sandbox's own
/// tests and benches, which speak raw HTTP over it).
pub fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(CertificateDer::pem_slice_iter(ca_pem.as_bytes()).flatten());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// Serves `router` over TLS on `listener`, on the `runtime` given, until
/// `stop` turns true. Each connection is handshaken on its own task, so a
/// slow client never holds up the accept loop; open watches end when the
/// sandbox stops.
pub fn serve(
    runtime: &tokio::runtime::Handle,
    listener: tokio::net::TcpListener,
    router: Router,
    tls: &ClusterTls,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    // Re-registered on `runtime`, so that its own I/O driver serves it.
    let listener = listener.into_std();
    runtime.spawn(async move {
        let listener = match listener.and_then(tokio::net::TcpListener::from_std) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("moving the Kubernetes API listener to its runtime: {e}");
                return;
            }
        };
        let mut stop_accept = stop.clone();
        loop {
            let tcp = tokio::select! {
                r = listener.accept() => match r {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        tracing::warn!("accepting a Kubernetes API connection: {e}");
                        continue;
                    }
                },
                _ = stop_accept.wait_for(|s| *s) => break,
            };
            let acceptor = acceptor.clone();
            let router = router.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    // A client that does not trust the CA hangs up here.
                    return;
                };
                let service = TowerToHyperService::new(router);
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                tokio::select! {
                    _ = conn => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            });
        }
    });
}

/// A blocking TLS stream to `host:port`, trusting only `ca_pem`: for the
/// sandbox's own wire-level tests and its bench, which write raw HTTP/1.x.
pub fn blocking_stream(addr: &str, ca_pem: &str) -> std::io::Result<impl std::io::Read + std::io::Write> {
    let tcp = std::net::TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
    let name = rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let config = client_config(ca_pem).map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

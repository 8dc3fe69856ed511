//! A TLS-terminating proxy in front of a dev server, and the certificates it and its clients use,
//! made by the test: what a Temporal cluster behind TLS (or Temporal Cloud) looks like to CHUM.
//!
//! [`TestPki`] writes PEM files: a CA, a second CA nobody trusts, the server's certificate for
//! [`SERVER_NAME`] (and an expired one), a client certificate from the CA, an expired one, and one
//! from the stranger CA. [`TlsProxy`] listens on loopback with rustls (asking for a client
//! certificate from the CA when told to), speaks HTTP/2 to the client, forwards each gRPC request
//! to the dev server over HTTP/2 (hyper), and records each request's `authorization` header and
//! each failed handshake as the server saw it. Given a required key, it answers any other
//! `authorization` with gRPC's UNAUTHENTICATED, as Temporal Cloud does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The name on the server's certificate (not the proxy's address: a client must set it as the
/// server name to connect).
pub const SERVER_NAME: &str = "temporal.test";

/// Certificates and keys as PEM files in a directory.
pub struct TestPki {
    dir: PathBuf,
    server: (String, String),
    expired_server: (String, String),
    ca: String,
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn make_ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("the CA signs itself");
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf certificate and its key (PEM), for a server (`names`) or a client.
fn make_leaf(ca: &Ca, common_name: &str, names: &[&str], server: bool, expired: bool) -> (String, String) {
    let key = KeyPair::generate().expect("a key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("leaf parameters");
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    if expired {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, &ca.issuer).expect("the CA signs");
    (cert.pem(), key.serialize_pem())
}

impl TestPki {
    /// Makes the CAs, certificates and keys and writes them into `dir`: `ca.pem`,
    /// `stranger-ca.pem`, `client.pem` + `client.key`, `expired-client.pem` + `.key`,
    /// `stranger-client.pem` + `.key` (signed by the stranger CA).
    pub fn make(dir: &Path) -> TestPki {
        std::fs::create_dir_all(dir).expect("the PKI directory");
        let ca = make_ca("CHUM test CA");
        let stranger = make_ca("a CA nobody trusts");
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).expect("a PEM file is written");
        write("ca.pem", &ca.pem);
        write("stranger-ca.pem", &stranger.pem);
        for (name, issuer, expired) in [
            ("client", &ca, false),
            ("expired-client", &ca, true),
            ("stranger-client", &stranger, false),
        ] {
            let (cert, key) = make_leaf(issuer, &format!("chum {name}"), &[], false, expired);
            write(&format!("{name}.pem"), &cert);
            write(&format!("{name}.key"), &key);
        }
        TestPki {
            dir: dir.to_path_buf(),
            server: make_leaf(&ca, SERVER_NAME, &[SERVER_NAME], true, false),
            expired_server: make_leaf(&ca, SERVER_NAME, &[SERVER_NAME], true, true),
            ca: ca.pem,
        }
    }

    /// A file written by [`TestPki::make`].
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// How the proxy greets its clients.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// Ask for a client certificate issued by the test CA, and refuse the connection without one.
    pub require_client_cert: bool,
    /// Present an expired server certificate.
    pub expired_server_cert: bool,
    /// Answer UNAUTHENTICATED unless `authorization` is `Bearer <this>`.
    pub require_api_key: Option<String>,
}

/// What the proxy saw.
#[derive(Debug, Default)]
struct Seen {
    authorizations: Vec<Option<String>>,
    handshake_errors: Vec<String>,
}

/// The running proxy; it stops when dropped.
pub struct TlsProxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

impl TlsProxy {
    /// Listens on a free loopback port and forwards to the plain gRPC server at `upstream`.
    pub async fn start(upstream: SocketAddr, pki: &TestPki, options: ProxyOptions) -> TlsProxy {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = if options.require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pem_cert(&pki.ca)).expect("the CA is a root");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let (cert, key) = if options.expired_server_cert {
            &pki.expired_server
        } else {
            &pki.server
        };
        let mut config = builder
            .with_single_cert(vec![pem_cert(cert)], pem_key(key))
            .expect("the server's certificate and key");
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("the proxy listens");
        let addr = listener.local_addr().expect("its address");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn(accept_loop(listener, acceptor, upstream, options, seen.clone()));
        TlsProxy { addr, seen, task }
    }

    /// The `authorization` header of every request forwarded or refused, in order (`None`: none).
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.seen.lock().expect("the proxy's record").authorizations.clone()
    }

    /// Each failed TLS handshake, as the server saw it.
    pub fn handshake_errors(&self) -> Vec<String> {
        self.seen.lock().expect("the proxy's record").handshake_errors.clone()
    }
}

fn pem_cert(pem: &str) -> CertificateDer<'static> {
    let der = pem_body(pem);
    CertificateDer::from(der)
}

fn pem_key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pem_body(pem)))
}

/// The DER inside a PEM block (rcgen writes one block, base64 in lines).
fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM written by rcgen")
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    upstream: SocketAddr,
    options: ProxyOptions,
    seen: Arc<Mutex<Seen>>,
) {
    while let Ok((tcp, _)) = listener.accept().await {
        let (acceptor, options, seen) = (acceptor.clone(), options.clone(), seen.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).into_fallible().await {
                Ok(tls) => tls,
                Err((e, mut tcp)) => {
                    seen.lock()
                        .expect("the proxy's record")
                        .handshake_errors
                        .push(e.to_string());
                    // Linger as servers do: read what the client still sends until it closes, so
                    // the alert reaches it rather than a reset for unread data.
                    let drain = async {
                        let mut buf = [0u8; 4096];
                        while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
                    };
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), drain).await;
                    return;
                }
            };
            let Ok(up) = TcpStream::connect(upstream).await else {
                return;
            };
            let Ok((sender, connection)) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(up)).await
            else {
                return;
            };
            tokio::spawn(connection);
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let (mut sender, options, seen) = (sender.clone(), options.clone(), seen.clone());
                async move { forward(request, &mut sender, upstream, &options, &seen).await }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn forward(
    request: Request<Incoming>,
    sender: &mut hyper::client::conn::http2::SendRequest<Incoming>,
    upstream: SocketAddr,
    options: &ProxyOptions,
    seen: &Mutex<Seen>,
) -> Result<Response<ProxyBody>, hyper::Error> {
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    seen.lock()
        .expect("the proxy's record")
        .authorizations
        .push(authorization.clone());
    if let Some(key) = &options.require_api_key
        && authorization.as_deref() != Some(&format!("Bearer {key}"))
    {
        // A trailers-only gRPC answer: UNAUTHENTICATED.
        let refusal = Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "16")
            .header("grpc-message", "the API key is not valid")
            .body(Empty::<Bytes>::new().map_err(|never| match never {}).boxed())
            .expect("a refusal");
        return Ok(refusal);
    }
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    parts.uri = format!("http://{upstream}{path}").parse().expect("the upstream URI");
    let response = sender.send_request(Request::from_parts(parts, body)).await?;
    Ok(response.map(BodyExt::boxed))
}

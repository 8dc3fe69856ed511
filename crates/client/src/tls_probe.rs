//! Why a TLS connection failed, asked of the server directly: run only after the SDK's connection
//! failed with TLS on and its error did not say (a server that refuses the client's certificate
//! does so after the handshake, and the gRPC stack keeps only the text of the alert).
//!
//! The probe makes the same handshake the connection made (the same trusted CA, client
//! certificate and server name; the system's roots without a CA), then opens HTTP/2 (the client
//! preface and an empty SETTINGS frame) and reads: a server that accepted the handshake answers
//! with its SETTINGS, one that refused sends an alert, which rustls gives here as a typed error.

use std::sync::Arc;
use std::time::Duration;

use chum_core::config::{Pem, TemporalSettings};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::Url;

use crate::envconfig::read_pem;

/// The HTTP/2 client preface and an empty SETTINGS frame.
const H2_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// The TLS error the server's side of a fresh connection gives, if any; `None` when the probe
/// could not be made or found nothing wrong with TLS.
pub async fn tls_failure(settings: &TemporalSettings) -> Option<rustls::Error> {
    let c = &settings.connection;
    let url = Url::parse(&settings.address).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_or_known_default()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &c.server_ca {
        Some(ca) => {
            for cert in CertificateDer::pem_slice_iter(&read_pem(ca).ok()?) {
                roots.add(cert.ok()?).ok()?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots);
    let mut config = match (&c.client_cert, &c.client_key) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert)?;
            let key = PrivateKeyDer::from_pem_slice(&read_pem(key).ok()?).ok()?;
            builder.with_client_auth_cert(chain, key).ok()?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(c.server_name.clone().unwrap_or(host.clone())).ok()?;
    let within = Duration::from_secs(5);
    let tcp = tokio::time::timeout(within, TcpStream::connect((host.as_str(), port)))
        .await
        .ok()?
        .ok()?;
    let mut tls = match tokio::time::timeout(within, TlsConnector::from(Arc::new(config)).connect(name, tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return rustls_error(e),
        Err(_) => return None,
    };
    if let Err(e) = tls.write_all(H2_START).await {
        return rustls_error(e);
    }
    let mut answer = [0u8; 64];
    match tokio::time::timeout(within, tls.read(&mut answer)).await {
        Ok(Err(e)) => rustls_error(e),
        _ => None,
    }
}

fn certificates(pem: &Pem) -> Option<Vec<CertificateDer<'static>>> {
    let bytes = read_pem(pem).ok()?;
    CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .ok()
}

/// tokio-rustls gives rustls's error inside an I/O error.
fn rustls_error(e: std::io::Error) -> Option<rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>().cloned()
}

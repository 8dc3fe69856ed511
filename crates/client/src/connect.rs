//! Connecting to Temporal (plain, TLS, mutual TLS, an API key), with retry and backoff for a
//! server that is not up yet, and a typed [`ConnectError`] that says what to do: a certificate
//! problem is never retried, it is named.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chum_core::config::{ConnectionSettings, Pem, Setting, TemporalSettings};
use rustls::{AlertDescription, CertificateError};
use temporalio_client::{
    Client, ClientOptions, ClientTlsOptions, Connection, ConnectionOptions, TlsOptions, errors::ClientConnectError,
    tonic::Code,
};
use url::Url;

use crate::codec::AesGcmCodec;
use crate::envconfig::read_pem;

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{reason}")]
    Codec { reason: String },
    #[error("temporal.address {address:?} is not a URL: {reason}")]
    Address { address: String, reason: String },
    #[error("cannot read temporal.{setting} {pem}: {error}; check the path")]
    Unreadable {
        setting: &'static str,
        pem: String,
        error: String,
    },
    #[error(
        "cannot reach the Temporal server at {address} (tried for {secs}s: {detail}). Start one with `make up` (or `scripts/dev.sh`), or point temporal.address / TEMPORAL_ADDRESS at a running server"
    )]
    Unreachable { address: String, secs: u64, detail: String },
    #[error(
        "the certificate of the server at {address} is not signed by {trusted}; set temporal.server_ca (or TEMPORAL_TLS_SERVER_CA_CERT_PATH) to the CA that signed it"
    )]
    UnknownServerCa { address: String, trusted: String },
    #[error(
        "the certificate of the server at {address} has expired or is not valid yet; the server's operator must renew it"
    )]
    ServerCertExpired { address: String },
    #[error(
        "the certificate of the server at {address} is not valid for the name {name}; set temporal.server_name (or TEMPORAL_TLS_SERVER_NAME) to a name it carries"
    )]
    ServerNameMismatch { address: String, name: String },
    #[error("the certificate of the server at {address} was refused: {detail}")]
    ServerCertInvalid { address: String, detail: String },
    #[error(
        "the server at {address} wants a client certificate and none was given; set temporal.client_cert and temporal.client_key (or TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH)"
    )]
    ClientCertMissing { address: String },
    #[error("the server at {address} refused the client certificate {cert}: it has expired; renew it")]
    ClientCertExpired { address: String, cert: String },
    #[error(
        "the server at {address} refused the client certificate {cert} ({alert}): it is not signed by a CA the server trusts, or was revoked; use a certificate the server's CA issued"
    )]
    ClientCertRefused {
        address: String,
        cert: String,
        alert: String,
    },
    #[error("the server at {address} refused the API key from ${var} ({detail}); check the key and the namespace")]
    Unauthenticated {
        address: String,
        var: String,
        detail: String,
    },
    #[error(
        "the TLS handshake with {address} failed: {detail}. Is the server speaking TLS (tls = true) on this port, or plain gRPC (tls = false)?"
    )]
    Tls { address: String, detail: String },
}

impl ConnectError {
    /// Whether waiting may help (the server not up yet); a certificate, a name or a key won't
    /// change by itself.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConnectError::Unreachable { .. })
    }
}

/// Connects to the configured server, retrying with backoff for up to `patience` while it cannot
/// be reached. Every failed attempt is reported through `on_retry` (attempt number, error, next
/// delay).
pub async fn connect(
    settings: &TemporalSettings,
    identity: &str,
    patience: Duration,
    mut on_retry: impl FnMut(u32, &str, Duration),
) -> Result<Client, ConnectError> {
    let options = connection_options(settings, identity)?;
    let codec = payload_codec(settings)?;
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match Connection::connect(options.clone()).await {
            Ok(connection) => {
                let client_options = ClientOptions::new(settings.namespace.clone())
                    .data_converter(crate::codec::data_converter(codec.as_ref()))
                    .build();
                return Client::new(connection, client_options).map_err(|e| ConnectError::Tls {
                    address: settings.address.clone(),
                    detail: e.to_string(),
                });
            }
            Err(e) => {
                let error = classify(settings, &e, started.elapsed());
                // Refused after the handshake: ask the server why, by type.
                let after_handshake = matches!(e, ClientConnectError::SystemInfoCallError(_));
                if settings.connection.tls && after_handshake && error.is_retryable() {
                    match crate::tls_probe::tls_failure(settings).await {
                        Some(tls) => from_tls(settings, &tls),
                        None => error,
                    }
                } else {
                    error
                }
            }
        };
        if !error.is_retryable() || started.elapsed() + delay > patience {
            return Err(error);
        }
        on_retry(attempt, &error.to_string(), delay);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The payload codec `[temporal.codec]` asks for, shared by the client, the worker and the
/// codec endpoint.
pub fn payload_codec(settings: &TemporalSettings) -> Result<Option<Arc<AesGcmCodec>>, ConnectError> {
    settings
        .codec
        .as_ref()
        .map(|c| {
            AesGcmCodec::new(c)
                .map(Arc::new)
                .map_err(|reason| ConnectError::Codec { reason })
        })
        .transpose()
}

/// The SDK's connection options for `settings`: the URL, TLS with the server CA, the client
/// certificate and the server name, and the API key (sent as `authorization: Bearer <key>`).
pub fn connection_options(settings: &TemporalSettings, identity: &str) -> Result<ConnectionOptions, ConnectError> {
    let url = Url::parse(&settings.address).map_err(|e| ConnectError::Address {
        address: settings.address.clone(),
        reason: e.to_string(),
    })?;
    let c = &settings.connection;
    let tls = if c.tls { Some(tls_options(c)?) } else { None };
    Ok(ConnectionOptions::new(url)
        .identity(identity.to_string())
        .connect_timeout(Duration::from_secs(5))
        .maybe_tls_options(tls)
        .maybe_api_key(c.api_key.as_ref().filter(|_| c.tls).map(|k| k.expose().to_string()))
        .build())
}

fn tls_options(c: &ConnectionSettings) -> Result<TlsOptions, ConnectError> {
    let read = |setting: Setting, pem: &Pem| {
        read_pem(pem).map_err(|e| ConnectError::Unreadable {
            setting: setting.key(),
            pem: pem.to_string(),
            error: e.to_string(),
        })
    };
    let server_ca = c.server_ca.as_ref().map(|p| read(Setting::ServerCa, p)).transpose()?;
    let client = match (&c.client_cert, &c.client_key) {
        (Some(cert), Some(key)) => Some(
            ClientTlsOptions::builder()
                .client_cert(read(Setting::ClientCert, cert)?)
                .client_private_key(read(Setting::ClientKey, key)?)
                .build(),
        ),
        _ => None,
    };
    Ok(TlsOptions::builder()
        .maybe_server_root_ca_cert(server_ca)
        .maybe_domain(c.server_name.clone())
        .maybe_client_tls_options(client)
        .build())
}

/// The SDK's error as what went wrong, read by type: the TLS library's error or alert wherever
/// it is in the chain (the connection's, or that of the first call made on it), else the gRPC
/// code, else "unreachable".
fn classify(settings: &TemporalSettings, error: &ClientConnectError, waited: Duration) -> ConnectError {
    // The first call's status is the variant's field, not its `source()`.
    let error: &(dyn StdError + 'static) = match error {
        ClientConnectError::SystemInfoCallError(status) => status,
        other => other,
    };
    if let Some(tls) = find::<rustls::Error>(error) {
        return from_tls(settings, tls);
    }
    let address = settings.address.clone();
    let c = &settings.connection;
    if let Some(status) = find::<temporalio_client::tonic::Status>(error)
        && matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied)
    {
        return ConnectError::Unauthenticated {
            address,
            var: c.api_key_env.clone(),
            detail: status.message().to_string(),
        };
    }
    ConnectError::Unreachable {
        address,
        secs: waited.as_secs(),
        detail: chain(error),
    }
}

/// What a TLS error means, and what to do about it.
fn from_tls(settings: &TemporalSettings, tls: &rustls::Error) -> ConnectError {
    let address = settings.address.clone();
    let c = &settings.connection;
    let cert = c.client_cert.as_ref().map(ToString::to_string).unwrap_or_default();
    match tls {
        rustls::Error::InvalidCertificate(why) => match why {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => ConnectError::UnknownServerCa {
                address,
                trusted: match &c.server_ca {
                    Some(ca) => format!("the CA in {ca}"),
                    None => "a CA this system trusts".into(),
                },
            },
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => ConnectError::ServerCertExpired { address },
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                let name = c.server_name.clone().unwrap_or_else(|| {
                    Url::parse(&settings.address)
                        .ok()
                        .and_then(|u| u.host_str().map(str::to_string))
                        .unwrap_or_default()
                });
                ConnectError::ServerNameMismatch { address, name }
            }
            other => ConnectError::ServerCertInvalid {
                address,
                detail: format!("{other:?}"),
            },
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure if c.client_cert.is_none() => {
                ConnectError::ClientCertMissing { address }
            }
            AlertDescription::CertificateExpired => ConnectError::ClientCertExpired { address, cert },
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied
                if c.client_cert.is_some() =>
            {
                ConnectError::ClientCertRefused {
                    address,
                    cert,
                    alert: format!("{alert:?}"),
                }
            }
            other => ConnectError::Tls {
                address,
                detail: format!("the server sent the alert {other:?}"),
            },
        },
        other => ConnectError::Tls {
            address,
            detail: other.to_string(),
        },
    }
}

/// The first error of type `T` in the chain, looking inside I/O errors too (which hide the
/// error they wrap from `source()`).
fn find<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(found) = find::<T>(inner)
        {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// An error and its causes on one line.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut current = error.source();
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

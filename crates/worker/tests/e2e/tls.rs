//! Connecting like every Temporal tool, for real: a TLS-terminating proxy (rustls) in front of a
//! real dev server, with a CA and certificates made by the test. The configuration is loaded as
//! the worker loads it (`chum.toml`, then `TEMPORAL_*` beneath it), the connection made by
//! `chum_client::connect`, the one the worker, `chum` and `chum doctor` use.
//!
//! - the right certificates connect (mutual TLS, the server CA, a server name other than the
//!   address), a plain `host:port` address gets `https://`, and the API key reaches the server as
//!   `authorization: Bearer <key>` on every request (checked at the proxy);
//! - a wrong CA, a missing client certificate, an expired client certificate, a client certificate
//!   from another CA, an expired server certificate, a server name the certificate does not carry
//!   and a refused API key each fail at once with an error that says which (typed);
//! - `worker --check` and `chum doctor` say what was loaded from where, and never the key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use chum_client::connect::{ConnectError, connect};
use chum_client::settings::load_config_with_env;
use chum_core::config::{ChumConfig, RawConfig, RawTemporal};
use chum_testkit::*;
use temporalio_client::Client;

const KEY: &str = "tmprl-test-key.0123456789";

/// A valid configuration (no review gate, so one provider will do).
fn valid_config() -> RawConfig {
    let mut file = small_config(&["true"], &["planner", "executor"]);
    file.project().dod = vec!["true".into()];
    file.project().gates = Some(vec!["dod".into()]);
    file
}

/// A valid configuration whose `[temporal]` points at `proxy` (as plain `host:port`), trusting
/// the test CA and naming the certificate's server name; `change` changes the rest of it.
fn temporal_through(proxy: &TlsProxy, change: impl FnOnce(&mut RawTemporal)) -> RawConfig {
    let mut file = valid_config();
    file.temporal = RawTemporal {
        address: Some(proxy.addr.to_string()),
        server_ca: Some("pki/ca.pem".into()),
        server_name: Some(SERVER_NAME.into()),
        ..RawTemporal::default()
    };
    change(&mut file.temporal);
    file
}

/// `file` written as `dir/chum.toml` and loaded as the worker loads it, with `env` as the
/// environment (the process's own is never read).
fn load(dir: &Path, file: &RawConfig, env: &[(&str, &str)]) -> ChumConfig {
    let path = dir.join("chum.toml");
    std::fs::write(&path, toml::to_string(file).expect("the config serializes")).expect("written");
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    load_config_with_env(&path, &env).unwrap_or_else(|e| panic!("the config loads: {e}"))
}

async fn connect_to(config: &ChumConfig) -> Result<Client, ConnectError> {
    connect(&config.temporal, "chum-tls-test", Duration::from_secs(20), |_, _, _| {}).await
}

/// A directory with the test's certificates under `pki/`, and nothing listening behind the proxy:
/// for the cases the handshake refuses, nothing reaches a server.
async fn refusing(options: ProxyOptions) -> (tempfile::TempDir, TlsProxy) {
    let dir = tempfile::tempdir().expect("a directory");
    let pki = TestPki::make(&dir.path().join("pki"));
    let nowhere: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let proxy = TlsProxy::start(nowhere, &pki, options).await;
    (dir, proxy)
}

/// Connects expecting a refusal, which must come at once (a certificate does not fix itself, so
/// it is never retried).
async fn refused(config: &ChumConfig) -> ConnectError {
    let started = Instant::now();
    let Err(error) = connect_to(config).await else {
        panic!("connected, but the proxy should have refused");
    };
    assert!(started.elapsed() < Duration::from_secs(5), "not retried: {error}");
    error
}

#[tokio::test(flavor = "multi_thread")]
async fn the_right_certificates_connect_and_the_api_key_reaches_the_server() {
    let harness = Harness::with_steps("tls-right-certs", Vec::new()).await;
    let pki = TestPki::make(&harness.dir.path().join("pki"));
    let upstream: SocketAddr = harness
        .address
        .trim_start_matches("http://")
        .parse()
        .expect("the dev server's address");
    let proxy = TlsProxy::start(
        upstream,
        &pki,
        ProxyOptions {
            require_client_cert: true,
            require_api_key: Some(KEY.into()),
            ..ProxyOptions::default()
        },
    )
    .await;
    // The client certificate from chum.toml (relative to it), the server CA and the API key
    // from the variables every Temporal tool reads.
    let file = temporal_through(&proxy, |t| {
        t.server_ca = None;
        t.client_cert = Some("pki/client.pem".into());
        t.client_key = Some("pki/client.key".into());
    });
    let ca = pki.path("ca.pem").display().to_string();
    let config = load(
        harness.dir.path(),
        &file,
        &[("TEMPORAL_TLS_SERVER_CA_CERT_PATH", &ca), ("TEMPORAL_API_KEY", KEY)],
    );
    assert_eq!(config.temporal.address, format!("https://{}", proxy.addr));

    let client = connect_to(&config).await.unwrap_or_else(|e| panic!("connects: {e}"));
    let mut runs = client.list_workflows("", Default::default());
    let first = futures::StreamExt::next(&mut runs).await;
    assert!(
        first.as_ref().is_none_or(|r| r.is_ok()),
        "a request goes through the proxy to the dev server: {first:?}"
    );

    let seen = proxy.authorizations();
    assert!(seen.len() >= 2, "the connection's check and the listing: {seen:?}");
    assert!(
        seen.iter().all(|a| a.as_deref() == Some(&*format!("Bearer {KEY}"))),
        "every request carries the key: {seen:?}"
    );
    assert!(proxy.handshake_errors().is_empty(), "{:?}", proxy.handshake_errors());

    // `chum doctor` connects the same way and says from where, never the key.
    let doctor = std::process::Command::new(chum_cli())
        .arg("--config")
        .arg(harness.dir.path().join("chum.toml"))
        .arg("doctor")
        .env("TEMPORAL_TLS_SERVER_CA_CERT_PATH", &ca)
        .env("TEMPORAL_API_KEY", KEY)
        .output()
        .expect("chum doctor runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&doctor.stdout),
        String::from_utf8_lossy(&doctor.stderr)
    );
    assert!(said.contains(&format!("reachable at https://{}", proxy.addr)), "{said}");
    assert!(
        said.contains(&format!("TLS: server CA {ca} (from TEMPORAL_TLS_SERVER_CA_CERT_PATH)")),
        "{said}"
    );
    assert!(said.contains("API key: set (from $TEMPORAL_API_KEY)"), "{said}");
    assert!(!said.contains(KEY), "never the key: {said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_certificate_from_another_ca_is_named() {
    let (dir, proxy) = refusing(ProxyOptions::default()).await;
    let file = temporal_through(&proxy, |t| t.server_ca = Some("pki/stranger-ca.pem".into()));
    let error = refused(&load(dir.path(), &file, &[])).await;
    let ConnectError::UnknownServerCa { trusted, .. } = &error else {
        panic!("a wrong CA: {error}");
    };
    assert!(trusted.ends_with("stranger-ca.pem"), "names the CA trusted: {error}");
    assert!(
        error.to_string().contains("temporal.server_ca"),
        "says what to set: {error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_client_certificate_is_named() {
    let (dir, proxy) = refusing(ProxyOptions {
        require_client_cert: true,
        ..ProxyOptions::default()
    })
    .await;
    let error = refused(&load(dir.path(), &temporal_through(&proxy, |_| {}), &[])).await;
    assert!(matches!(error, ConnectError::ClientCertMissing { .. }), "{error}");
    assert!(
        error.to_string().contains("temporal.client_cert"),
        "says what to set: {error}"
    );
    assert!(!proxy.handshake_errors().is_empty(), "the proxy refused the handshake");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_client_certificate_is_named() {
    let (dir, proxy) = refusing(ProxyOptions {
        require_client_cert: true,
        ..ProxyOptions::default()
    })
    .await;
    let file = temporal_through(&proxy, |t| {
        t.client_cert = Some("pki/expired-client.pem".into());
        t.client_key = Some("pki/expired-client.key".into());
    });
    let error = refused(&load(dir.path(), &file, &[])).await;
    let ConnectError::ClientCertExpired { cert, .. } = &error else {
        panic!("an expired client certificate: {error}");
    };
    assert!(cert.ends_with("expired-client.pem"), "names the certificate: {error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_from_another_ca_is_refused() {
    let (dir, proxy) = refusing(ProxyOptions {
        require_client_cert: true,
        ..ProxyOptions::default()
    })
    .await;
    let file = temporal_through(&proxy, |t| {
        t.client_cert = Some("pki/stranger-client.pem".into());
        t.client_key = Some("pki/stranger-client.key".into());
    });
    let error = refused(&load(dir.path(), &file, &[])).await;
    assert!(matches!(error, ConnectError::ClientCertRefused { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_server_certificate_is_named() {
    let (dir, proxy) = refusing(ProxyOptions {
        expired_server_cert: true,
        ..ProxyOptions::default()
    })
    .await;
    let error = refused(&load(dir.path(), &temporal_through(&proxy, |_| {}), &[])).await;
    assert!(matches!(error, ConnectError::ServerCertExpired { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_server_name_the_address_does_not_match_the_certificate() {
    let (dir, proxy) = refusing(ProxyOptions::default()).await;
    let file = temporal_through(&proxy, |t| t.server_name = None);
    let error = refused(&load(dir.path(), &file, &[])).await;
    let ConnectError::ServerNameMismatch { name, .. } = &error else {
        panic!("a name the certificate does not carry: {error}");
    };
    assert_eq!(name, "127.0.0.1");
    assert!(
        error.to_string().contains("temporal.server_name"),
        "says what to set: {error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_api_key_is_named_by_its_variable() {
    let dir = tempfile::tempdir().expect("a directory");
    let harness = Harness::with_steps("tls-wrong-key", Vec::new()).await;
    let pki = TestPki::make(&dir.path().join("pki"));
    let upstream: SocketAddr = harness
        .address
        .trim_start_matches("http://")
        .parse()
        .expect("an address");
    let proxy = TlsProxy::start(
        upstream,
        &pki,
        ProxyOptions {
            require_api_key: Some(KEY.into()),
            ..ProxyOptions::default()
        },
    )
    .await;
    let file = temporal_through(&proxy, |t| t.api_key_env = Some("CLOUD_KEY".into()));
    let config = load(dir.path(), &file, &[("CLOUD_KEY", "not-the-key")]);
    let error = refused(&config).await;
    let ConnectError::Unauthenticated { var, .. } = &error else {
        panic!("a refused key: {error}");
    };
    assert_eq!(var, "CLOUD_KEY");
    assert!(!error.to_string().contains("not-the-key"), "never the key: {error}");
    assert_eq!(
        proxy.authorizations().last(),
        Some(&Some("Bearer not-the-key".to_string()))
    );
}

#[test]
fn worker_check_says_what_was_loaded_from_where_and_never_the_key() {
    let dir = tempfile::tempdir().expect("a directory");
    let pki = TestPki::make(&dir.path().join("pki"));
    let mut file = valid_config();
    file.temporal = RawTemporal {
        client_cert: Some("pki/client.pem".into()),
        client_key: Some("pki/client.key".into()),
        ..RawTemporal::default()
    };
    let path = dir.path().join("chum.toml");
    std::fs::write(&path, toml::to_string(&file).expect("serializes")).expect("written");
    let ca = pki.path("ca.pem").display().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("TEMPORAL_ADDRESS", "temporal.example:7233")
        .env("TEMPORAL_TLS_SERVER_CA_CERT_PATH", &ca)
        .env("TEMPORAL_API_KEY", KEY)
        .output()
        .expect("worker runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let file_name = path.display().to_string();
    for line in [
        "temporal: address https://temporal.example:7233 (from TEMPORAL_ADDRESS)".to_string(),
        "temporal: namespace default (default)".to_string(),
        format!("temporal: TLS: server CA {ca} (from TEMPORAL_TLS_SERVER_CA_CERT_PATH)"),
        format!(
            "temporal: TLS: client certificate {} (from {file_name} temporal.client_cert)",
            pki.path("client.pem").display()
        ),
        "temporal: API key: set (from $TEMPORAL_API_KEY)".to_string(),
    ] {
        assert!(stdout.lines().any(|l| l == line), "missing {line:?} in:\n{stdout}");
    }
    assert!(
        !format!("{stdout}{stderr}").contains(KEY),
        "never the key:\n{stdout}{stderr}"
    );
}

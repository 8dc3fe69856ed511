//! Connecting to Temporal, with retry and backoff, and errors that say what to do.

use std::time::{Duration, Instant};

use chum_core::config::TemporalSettings;
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};
use url::Url;

/// Connects to the configured server, retrying with backoff for up to `patience`. Every failed
/// attempt is reported through `on_retry` (attempt number, error, next delay).
pub async fn connect(
    settings: &TemporalSettings,
    identity: &str,
    patience: Duration,
    mut on_retry: impl FnMut(u32, &str, Duration),
) -> anyhow::Result<Client> {
    let url = Url::parse(&settings.address)
        .map_err(|e| anyhow::anyhow!("temporal.address {:?} is not a URL: {e}", settings.address))?;
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let options = ConnectionOptions::new(url.clone())
            .identity(identity.to_string())
            .connect_timeout(Duration::from_secs(5))
            .build();
        let error = match Connection::connect(options).await {
            Ok(connection) => {
                let client = Client::new(connection, ClientOptions::new(settings.namespace.clone()).build())?;
                return Ok(client);
            }
            Err(e) => format!("{e}"),
        };
        if started.elapsed() + delay > patience {
            anyhow::bail!(
                "cannot reach the Temporal server at {} (tried for {}s: {error}). Start one with `make up` \
                 (or `scripts/dev.sh`), or point temporal.address / CHUM__TEMPORAL__ADDRESS at a running server",
                settings.address,
                started.elapsed().as_secs()
            );
        }
        on_retry(attempt, &error, delay);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

//! The Postgres backend's connections: opened with the password from the environment when the
//! URL holds none, kept in a small pool per URL (activities open the store per call), and the
//! schema brought up to date once per process and URL, under an advisory lock so workers starting
//! together migrate one after the other.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use chum_core::config::PostgresUrl;
use postgres::{Client, NoTls};

use super::StoreError;
use super::db::{Fault, on_own_thread};
use super::schema::POSTGRES_MIGRATIONS;

/// Idle connections kept per URL; more than this many are closed when returned.
const IDLE_PER_URL: usize = 4;

/// Taken around migrations: any number that is CHUM's alone in the database.
const MIGRATION_LOCK: i64 = 0x6368_756d_5f73_6368; // "chum_sch"

/// The migrations table: one row per migration applied (the numbers match SQLite's user_version).
const MIGRATIONS_TABLE: &str = "chum_schema_migrations";

fn idle() -> &'static Mutex<HashMap<String, Vec<Client>>> {
    static IDLE: OnceLock<Mutex<HashMap<String, Vec<Client>>>> = OnceLock::new();
    IDLE.get_or_init(Default::default)
}

fn migrated() -> &'static Mutex<HashSet<String>> {
    static MIGRATED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    MIGRATED.get_or_init(Default::default)
}

/// A connection that goes back to the pool when dropped.
pub(super) struct PooledClient {
    client: Option<Client>,
    key: String,
}

impl PooledClient {
    /// The connection; `None` only once `drop` has taken it back.
    pub fn client(&mut self) -> Option<&mut Client> {
        self.client.as_mut()
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        if !client.is_closed() {
            let mut idle = idle().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let list = idle.entry(self.key.clone()).or_default();
            if list.len() < IDLE_PER_URL {
                list.push(client);
                return;
            }
        }
        // The client owns a runtime, which cannot be dropped inside an async context.
        let _ = std::thread::spawn(move || drop(client)).join();
    }
}

/// A connection to `url`: an idle one of the pool, or a new one.
pub(super) fn connect(url: &PostgresUrl) -> Result<PooledClient, StoreError> {
    let key = url.secret_url().to_string();
    let pooled = idle()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get_mut(&key)
        .and_then(Vec::pop);
    let client = match pooled {
        Some(client) if !client.is_closed() => client,
        _ => open(url)?,
    };
    Ok(PooledClient {
        client: Some(client),
        key,
    })
}

fn open(url: &PostgresUrl) -> Result<Client, StoreError> {
    let shown = url.redacted();
    let mut config: postgres::Config = url.secret_url().parse().map_err(|source| StoreError::Postgres {
        url: shown.clone(),
        source,
    })?;
    if config.get_password().is_none()
        && let Ok(password) = std::env::var(url.password_env())
        && !password.is_empty()
    {
        config.password(password);
    }
    if config.get_application_name().is_none() {
        config.application_name("chum");
    }
    on_own_thread(move || config.connect(NoTls)).map_err(|fault| match fault {
        Fault::Postgres(source) => StoreError::Postgres { url: shown, source },
        Fault::Panicked => StoreError::Data {
            store: shown,
            detail: "the Postgres client's thread panicked while connecting".to_string(),
        },
    })
}

/// Brings the schema up to date, once per process and URL.
pub(super) fn migrate(conn: &super::db::Conn, url: &PostgresUrl) -> Result<(), StoreError> {
    let key = url.secret_url().to_string();
    if migrated().lock().unwrap_or_else(|p| p.into_inner()).contains(&key) {
        return Ok(());
    }
    conn.transaction("BEGIN", || {
        conn.batch(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))?;
        conn.batch(&format!(
            "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)"
        ))?;
        let applied = schema_version(conn)?;
        for (i, sql) in POSTGRES_MIGRATIONS.iter().enumerate().skip(applied) {
            conn.batch(sql)?;
            conn.execute(
                &format!(
                    "INSERT INTO {MIGRATIONS_TABLE} (version, applied_ms) \
                     VALUES (?1, CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT))"
                ),
                &[super::db::Value::Int(i as i64 + 1)],
            )?;
        }
        Ok(((), true))
    })?;
    migrated().lock().unwrap_or_else(|p| p.into_inner()).insert(key);
    Ok(())
}

/// Forgets which databases this process migrated (a test that rolls a schema back).
#[cfg(test)]
pub(super) fn forget_migrations() {
    migrated().lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// How many migrations the database has had.
pub(super) fn schema_version(conn: &super::db::Conn) -> Result<usize, StoreError> {
    let row = conn.query_one(
        &format!("SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM {MIGRATIONS_TABLE}"),
        &[],
    )?;
    Ok(row.map(|r| r.count(0)).transpose()?.unwrap_or(0) as usize)
}

//! `[store]`: where lessons, rules, runs, usage and groom records live. Nothing configured is the
//! embedded SQLite file under `state_dir`; `url = "postgres://..."` is one Postgres database that
//! several workers share. Its password never shows: [`PostgresUrl`] prints redacted, and the
//! password is best kept out of the file (`password_env`, or libpq's `PGPASSWORD`).

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::validate::Validator;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawStore {
    pub url: Option<String>,
    pub password_env: Option<String>,
}

/// Where the store is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreLocation {
    /// `<state_dir>/chum.db`, one worker's own.
    #[default]
    Embedded,
    /// A Postgres database, shared by every worker configured with it.
    Postgres(PostgresUrl),
}

/// The variable read for the password when `password_env` names none (libpq's).
pub const DEFAULT_PASSWORD_ENV: &str = "PGPASSWORD";

/// A Postgres connection URL. Debug and Display show it with any password as `***`; only
/// [`PostgresUrl::secret_url`] holds it as written.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    url: String,
    password_env: String,
}

impl PostgresUrl {
    /// A URL as given (the configuration validates what a user writes; tests build their own).
    /// The password comes from `password_env`'s variable (default `PGPASSWORD`) when it holds none.
    pub fn new(url: impl Into<String>, password_env: Option<String>) -> PostgresUrl {
        PostgresUrl {
            url: url.into(),
            password_env: password_env.unwrap_or_else(|| DEFAULT_PASSWORD_ENV.to_string()),
        }
    }

    /// The URL as written, password included: for connecting, never for showing.
    pub fn secret_url(&self) -> &str {
        &self.url
    }

    /// The environment variable the password comes from when the URL holds none.
    pub fn password_env(&self) -> &str {
        &self.password_env
    }

    /// The URL with its password (if any) replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PostgresUrl({:?}, password_env {:?})",
            self.redacted(),
            self.password_env
        )
    }
}

/// `scheme://user:password@host/...` -> `scheme://user:***@host/...`; anything else unchanged.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl Validator {
    /// `[store]`: the embedded default, or a Postgres URL with where its password comes from.
    pub(super) fn store(&self, raw: RawStore) -> Result<StoreLocation, ConfigError> {
        let Some(url) = raw.url else {
            if raw.password_env.is_some() {
                return Err(self.invalid(
                    "store.password_env",
                    "is for a Postgres store: set store.url = \"postgres://user@host:5432/chum\" too, or remove it",
                ));
            }
            return Ok(StoreLocation::Embedded);
        };
        let url = url.trim().to_string();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(self.invalid(
                "store.url",
                format!(
                    "{:?} is not a Postgres URL: write \"postgres://user@host:5432/database\", or leave [store] out for the embedded SQLite store",
                    redact(&url)
                ),
            ));
        }
        if url
            .split_once("://")
            .is_none_or(|(_, rest)| rest.trim_start_matches('/').is_empty())
        {
            return Err(self.invalid(
                "store.url",
                "names no server: write \"postgres://user@host:5432/database\"",
            ));
        }
        let password_env = match raw.password_env {
            None => DEFAULT_PASSWORD_ENV.to_string(),
            Some(name) => {
                let well_formed = !name.is_empty()
                    && !name.starts_with(|c: char| c.is_ascii_digit())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !well_formed {
                    return Err(self.invalid(
                        "store.password_env",
                        format!("{:?} is not an environment variable name; name the variable that holds the password, e.g. \"CHUM_STORE_PASSWORD\"", redact_value(&name)),
                    ));
                }
                name
            }
        };
        Ok(StoreLocation::Postgres(PostgresUrl { url, password_env }))
    }
}

/// A value that was meant to be a variable's name but may be the secret itself: shown only by
/// its length.
fn redact_value(value: &str) -> String {
    format!("<{} characters>", value.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(store: &str) -> Result<StoreLocation, ConfigError> {
        let text = format!("{}\n[store]\n{store}\n", crate::config::tests::GOOD);
        crate::config::ChumConfig::from_toml(&text, Path::new("/etc/chum/chum.toml"), Vec::new()).map(|c| c.store)
    }

    #[test]
    fn no_store_section_is_the_embedded_sqlite_store() {
        assert_eq!(load("").unwrap(), StoreLocation::Embedded);
    }

    #[test]
    fn a_postgres_url_is_kept_and_shown_without_its_password() {
        let StoreLocation::Postgres(url) = load("url = \"postgres://chum:hunter2@db.internal:5432/chum\"").unwrap()
        else {
            panic!("a Postgres store");
        };
        assert_eq!(url.secret_url(), "postgres://chum:hunter2@db.internal:5432/chum");
        assert_eq!(url.to_string(), "postgres://chum:***@db.internal:5432/chum");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(url.password_env(), "PGPASSWORD");
    }

    #[test]
    fn the_password_can_come_from_a_named_variable() {
        let StoreLocation::Postgres(url) =
            load("url = \"postgresql://chum@db:5432/chum\"\npassword_env = \"CHUM_DB_PASSWORD\"").unwrap()
        else {
            panic!("a Postgres store");
        };
        assert_eq!(url.password_env(), "CHUM_DB_PASSWORD");
    }

    #[test]
    fn bad_store_keys_name_the_key_and_never_echo_a_password() {
        let err = load("url = \"mysql://chum:hunter2@db/chum\"").unwrap_err();
        assert_eq!(err.key(), Some("store.url"));
        let shown = err.to_string();
        assert!(
            shown.contains("/etc/chum/chum.toml") && shown.contains("postgres://"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        let err = load("url = \"postgres://u@db/chum\"\npassword_env = \"s3cr3t-pass!\"").unwrap_err();
        assert_eq!(err.key(), Some("store.password_env"));
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        let err = load("url = \"postgresql://\"").unwrap_err();
        assert_eq!(err.key(), Some("store.url"));
        assert!(err.to_string().contains("names no server"), "{err}");
        let err = load("password_env = \"PW\"").unwrap_err();
        assert_eq!(err.key(), Some("store.password_env"));
    }

    #[test]
    fn redaction_keeps_everything_but_the_password() {
        assert_eq!(
            redact("postgres://a:b@h:1/d?sslmode=disable"),
            "postgres://a:***@h:1/d?sslmode=disable"
        );
        assert_eq!(redact("postgres://a@h/d"), "postgres://a@h/d");
        assert_eq!(redact("postgres://h/d"), "postgres://h/d");
        assert_eq!(redact("postgres://a:p@ss@h/d"), "postgres://a:***@h/d");
    }
}

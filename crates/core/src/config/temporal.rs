//! `[temporal]`: where the server is, how to reach it (TLS, mutual TLS, an API key) and where each
//! of those settings came from.
//!
//! The file's keys (and `CHUM__TEMPORAL__*`) are the top layer. Beneath them, `chum_client`'s
//! loader lays what every Temporal tool reads: the `TEMPORAL_*` variables, then a profile of the
//! Temporal CLI's config file (the SDK's envconfig). This module is the pure part: the file's keys
//! validated, the rules that decide TLS and the address's scheme, and the record of origins that
//! `chum doctor` and `worker --check` print. The API key itself is never in a file: only the name
//! of the variable that holds it (`api_key_env`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::codec::CodecSettings;
use super::validate::Validator;
use super::{ConfigError, DEFAULT_ADDRESS, DEFAULT_NAMESPACE, DEFAULT_TASK_QUEUE, DEFAULT_UI_URL, RawTemporal};

/// The variable the API key is read from unless `api_key_env` names another.
pub const DEFAULT_API_KEY_ENV: &str = "TEMPORAL_API_KEY";

#[derive(Debug, Clone, PartialEq)]
pub struct TemporalSettings {
    /// The server's URL as connected to: `host:port` written anywhere gets `https://` with TLS,
    /// `http://` without.
    pub address: String,
    pub namespace: String,
    pub task_queue: String,
    /// How long the worker keeps retrying to connect before giving up.
    pub connect_timeout: Duration,
    /// Where people look at runs: the Temporal UI (`temporal server start-dev` serves it on :8233).
    pub ui_url: String,
    /// TLS, the API key, and where every connection setting came from.
    pub connection: ConnectionSettings,
    /// `[temporal.codec]`: payloads encrypted before they reach the server; None sends them in
    /// clear.
    pub codec: Option<CodecSettings>,
}

/// How the connection is made, layered: the config file (or `CHUM__TEMPORAL__*`), then
/// `TEMPORAL_*` variables, then the Temporal profile file, then CHUM's defaults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionSettings {
    /// `temporal.address` exactly as the file (or `CHUM__TEMPORAL__ADDRESS`) wrote it.
    pub written_address: Option<String>,
    /// `temporal.tls` as the file wrote it.
    pub written_tls: Option<bool>,
    /// The Temporal profile to read (`temporal.profile`; else `TEMPORAL_PROFILE`, else "default").
    pub profile: Option<String>,
    /// The Temporal config file a profile was read from, when it had one.
    pub profile_file: Option<PathBuf>,
    /// Whether the connection uses TLS (see [`tls_wanted`]).
    pub tls: bool,
    pub server_ca: Option<Pem>,
    pub client_cert: Option<Pem>,
    pub client_key: Option<Pem>,
    /// The name the server's certificate is checked against (and SNI), when not the address's host.
    pub server_name: Option<String>,
    /// The name of the variable holding the API key.
    pub api_key_env: String,
    /// The API key, from the worker's environment only (`api_key_env`).
    pub api_key: Option<ApiKey>,
    /// Where each setting came from, by its `[temporal]` key.
    pub origins: BTreeMap<Setting, Origin>,
    /// Settings found and not used, said once by `chum doctor` and `worker --check`.
    pub ignored: Vec<String>,
}

/// A connection setting, named by its `[temporal]` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Setting {
    Address,
    Namespace,
    Profile,
    Tls,
    ServerCa,
    ClientCert,
    ClientKey,
    ServerName,
    ApiKey,
}

impl Setting {
    pub fn key(self) -> &'static str {
        match self {
            Setting::Address => "address",
            Setting::Namespace => "namespace",
            Setting::Profile => "profile",
            Setting::Tls => "tls",
            Setting::ServerCa => "server_ca",
            Setting::ClientCert => "client_cert",
            Setting::ClientKey => "client_key",
            Setting::ServerName => "server_name",
            Setting::ApiKey => "api_key_env",
        }
    }
}

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// CHUM's default (or, for TLS, implied by the other settings).
    Default,
    /// A `[temporal]` key of the config file.
    File { file: String, key: String },
    /// A `CHUM__TEMPORAL__*` variable.
    ChumEnv(String),
    /// A variable every Temporal tool reads (`TEMPORAL_ADDRESS`, `TEMPORAL_TLS_*`, ...).
    TemporalEnv(String),
    /// A profile of a Temporal config file (`temporal config`, `TEMPORAL_CONFIG_FILE`).
    Profile { file: String, profile: String },
}

impl Origin {
    /// Whether CHUM's own configuration set it (the top layer).
    pub fn is_chum(&self) -> bool {
        matches!(self, Origin::File { .. } | Origin::ChumEnv(_))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::File { file, key } => write!(f, "{file} {key}"),
            Origin::ChumEnv(var) | Origin::TemporalEnv(var) => write!(f, "{var}"),
            Origin::Profile { file, profile } => write!(f, "profile {profile} of {file}"),
        }
    }
}

/// A PEM file by its path, or PEM text given inline (`TEMPORAL_TLS_*_DATA`, a profile's `*_data`).
#[derive(Clone, PartialEq)]
pub enum Pem {
    Path(PathBuf),
    Inline(Vec<u8>),
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::Path(p) => write!(f, "Path({})", p.display()),
            // A client key given inline is a secret.
            Pem::Inline(data) => write!(f, "Inline({} bytes)", data.len()),
        }
    }
}

impl fmt::Display for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::Path(p) => write!(f, "{}", p.display()),
            Pem::Inline(data) => write!(f, "inline PEM ({} bytes)", data.len()),
        }
    }
}

/// An API key: never shown, in `Debug` or anywhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> ApiKey {
        ApiKey(key)
    }

    /// The key itself, for the one place that sends it (the connection's `authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey(<redacted>)")
    }
}

/// Whether to use TLS: an explicit `tls` wins; else TLS is on when anything only TLS uses is set
/// (a server CA, a client certificate or key, a server name), an API key is set (Temporal Cloud's
/// rule, and the SDK's), or the address is `https://`.
pub fn tls_wanted(explicit: Option<bool>, tls_settings_given: bool, api_key: bool, address: &str) -> bool {
    explicit.unwrap_or(tls_settings_given || api_key || address.starts_with("https://"))
}

/// The URL connected to: a URL is kept (its scheme must agree with `tls`), `host:port` gets the
/// scheme `tls` says. The error says what to write instead.
pub fn address_url(address: &str, tls: bool) -> Result<String, String> {
    let address = address.trim();
    let scheme = if tls { "https" } else { "http" };
    if let Some((given, rest)) = address.split_once("://") {
        if given != "http" && given != "https" {
            return Err(format!(
                "{address:?} is neither host:port nor an http:// or https:// URL; write e.g. \"127.0.0.1:7233\""
            ));
        }
        if given != scheme {
            return Err(if tls {
                format!("{address:?} is plain http:// but TLS is on; write https://{rest} or just {rest}")
            } else {
                format!("{address:?} is https:// but TLS is off (tls = false); write {rest}, or turn TLS on")
            });
        }
        return check_host(address);
    }
    check_host(&format!("{scheme}://{address}"))
}

fn check_host(url: &str) -> Result<String, String> {
    match url::Url::parse(url) {
        Ok(parsed) if parsed.host().is_some() => Ok(url.to_string()),
        Ok(_) => Err(format!(
            "{url:?} names no host; write host:port, e.g. \"127.0.0.1:7233\""
        )),
        Err(e) => Err(format!(
            "{url:?} is not an address ({e}); write host:port, e.g. \"127.0.0.1:7233\""
        )),
    }
}

impl Validator {
    /// `[temporal]`: where the server is, how long to wait for it, how to reach it.
    pub(super) fn temporal(
        &self,
        raw: RawTemporal,
        env: &BTreeMap<String, String>,
    ) -> Result<TemporalSettings, ConfigError> {
        let origin = |key: &str| {
            let var = format!("CHUM__TEMPORAL__{}", key.to_ascii_uppercase());
            if env.contains_key(&var) {
                Origin::ChumEnv(var)
            } else {
                Origin::File {
                    file: self.file.clone(),
                    key: format!("temporal.{key}"),
                }
            }
        };
        let mut origins = BTreeMap::new();
        let mut given = |setting: Setting, set: bool| {
            if set {
                origins.insert(setting, origin(setting.key()));
            }
        };
        given(Setting::Address, raw.address.is_some());
        given(Setting::Namespace, raw.namespace.is_some());
        given(Setting::Profile, raw.profile.is_some());
        given(Setting::Tls, raw.tls.is_some());
        given(Setting::ServerCa, raw.server_ca.is_some());
        given(Setting::ClientCert, raw.client_cert.is_some());
        given(Setting::ClientKey, raw.client_key.is_some());
        given(Setting::ServerName, raw.server_name.is_some());
        given(Setting::ApiKey, raw.api_key_env.is_some());

        let pem = |key: &str, value: Option<String>| -> Result<Option<Pem>, ConfigError> {
            match value {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => {
                    Err(self.invalid(key, "must not be empty; write a path to a PEM file"))
                }
                Some(v) => Ok(Some(Pem::Path(self.path(v.trim())))),
            }
        };
        let server_ca = pem("temporal.server_ca", raw.server_ca)?;
        let client_cert = pem("temporal.client_cert", raw.client_cert)?;
        let client_key = pem("temporal.client_key", raw.client_key)?;
        let server_name = match raw.server_name {
            Some(name) if name.trim().is_empty() || name.contains(['/', ':', ' ']) => {
                return Err(self.invalid(
                    "temporal.server_name",
                    format!("{name:?} is not a host name; write the name the server's certificate carries, e.g. \"temporal.example.com\""),
                ));
            }
            other => other,
        };
        let api_key_env = raw.api_key_env.unwrap_or_else(|| DEFAULT_API_KEY_ENV.to_string());
        if api_key_env.is_empty() || !api_key_env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(self.invalid(
                "temporal.api_key_env",
                format!("{api_key_env:?} is not an environment variable name; name the variable that holds the key (never the key itself), e.g. \"TEMPORAL_API_KEY\""),
            ));
        }
        let codec = self.codec(raw.codec)?;
        let profile = self.optional_non_empty("temporal.profile", raw.profile)?;
        let written_address = self.optional_non_empty("temporal.address", raw.address)?;
        let address_text = written_address.clone().unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
        let tls_settings_given =
            server_ca.is_some() || client_cert.is_some() || client_key.is_some() || server_name.is_some();
        let tls = tls_wanted(raw.tls, tls_settings_given, false, &address_text);
        let address = address_url(&address_text, tls).map_err(|why| self.invalid("temporal.address", why))?;
        Ok(TemporalSettings {
            address,
            namespace: self.non_empty("temporal.namespace", raw.namespace, DEFAULT_NAMESPACE)?,
            task_queue: self.non_empty("temporal.task_queue", raw.task_queue, DEFAULT_TASK_QUEUE)?,
            connect_timeout: self.duration(
                "temporal.connect_timeout",
                raw.connect_timeout.as_deref(),
                Duration::from_secs(60),
            )?,
            ui_url: self.non_empty("temporal.ui_url", raw.ui_url, DEFAULT_UI_URL)?,
            connection: ConnectionSettings {
                written_address,
                written_tls: raw.tls,
                profile,
                profile_file: None,
                tls,
                server_ca,
                client_cert,
                client_key,
                server_name,
                api_key_env,
                api_key: None,
                origins,
                ignored: Vec::new(),
            },
            codec,
        })
    }

    fn optional_non_empty(&self, key: &str, value: Option<String>) -> Result<Option<String>, ConfigError> {
        match value {
            Some(v) if v.trim().is_empty() => Err(self.invalid(key, "must not be empty")),
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChumConfig;
    use std::path::Path;

    fn temporal(section: &str, env: &[(&str, &str)]) -> Result<TemporalSettings, ConfigError> {
        let text = format!(
            "[temporal]\n{section}\n[projects.demo]\nrepo = \"demo\"\ndod = [\"true\"]\n[providers.a]\ncommand = [\"a\"]\n[providers.b]\ncommand = [\"b\"]\n[tiers]\nt = [\"a\"]\nr = [\"b\"]\n[roles]\nplanner = \"t\"\nexecutor = \"t\"\nreviewer = \"r\"\n"
        );
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        ChumConfig::from_toml(&text, Path::new("/etc/chum/chum.toml"), env).map(|c| c.temporal)
    }

    #[test]
    fn a_plain_host_and_port_gets_the_scheme_tls_says() {
        let t = temporal("address = \"temporal.internal:7233\"", &[]).unwrap();
        assert_eq!(t.address, "http://temporal.internal:7233");
        assert!(!t.connection.tls);
        let t = temporal("address = \"temporal.internal:7233\"\ntls = true", &[]).unwrap();
        assert_eq!(t.address, "https://temporal.internal:7233");
        let t = temporal("address = \"ns.tmprl.cloud:7233\"\nserver_ca = \"certs/ca.pem\"", &[]).unwrap();
        assert!(t.connection.tls, "a server CA means TLS");
        assert_eq!(t.address, "https://ns.tmprl.cloud:7233");
        assert_eq!(t.connection.server_ca, Some(Pem::Path("/etc/chum/certs/ca.pem".into())));
        let t = temporal("", &[]).unwrap();
        assert_eq!(t.address, "http://127.0.0.1:7233");
        assert_eq!(t.connection.api_key_env, "TEMPORAL_API_KEY");
        assert!(t.connection.origins.is_empty(), "nothing was set");
    }

    #[test]
    fn a_scheme_that_disagrees_with_tls_is_refused_with_what_to_write() {
        let err = temporal("address = \"http://t:7233\"\ntls = true", &[]).unwrap_err();
        assert_eq!(err.key(), Some("temporal.address"));
        assert!(err.to_string().contains("https://t:7233"), "{err}");
        let err = temporal("address = \"https://t:7233\"\ntls = false", &[]).unwrap_err();
        assert_eq!(err.key(), Some("temporal.address"));
        let err = temporal("address = \"grpc://t:7233\"", &[]).unwrap_err();
        assert!(err.to_string().contains("host:port"), "{err}");
    }

    #[test]
    fn the_key_is_never_in_the_file_only_the_name_of_its_variable() {
        let err = temporal("api_key_env = \"tmprl_abc.def-123\"", &[]).unwrap_err();
        assert_eq!(err.key(), Some("temporal.api_key_env"));
        assert!(err.to_string().contains("never the key itself"), "{err}");
        let err = temporal("api_key = \"secret\"", &[]).unwrap_err();
        assert_eq!(err.key(), Some("temporal.api_key"), "an unknown key: {err}");
        let t = temporal("api_key_env = \"CLOUD_KEY\"", &[]).unwrap();
        assert_eq!(t.connection.api_key_env, "CLOUD_KEY");
    }

    #[test]
    fn origins_say_which_layer_set_what() {
        let t = temporal(
            "address = \"t:7233\"\nclient_cert = \"/c.pem\"\nclient_key = \"/k.pem\"",
            &[("CHUM__TEMPORAL__NAMESPACE", "prod")],
        )
        .unwrap();
        let o = &t.connection.origins;
        assert_eq!(o[&Setting::Address].to_string(), "/etc/chum/chum.toml temporal.address");
        assert_eq!(
            o[&Setting::Namespace],
            Origin::ChumEnv("CHUM__TEMPORAL__NAMESPACE".into())
        );
        assert_eq!(t.namespace, "prod");
        assert!(o[&Setting::ClientKey].is_chum());
        assert!(!o.contains_key(&Setting::ServerCa));
    }

    #[test]
    fn an_api_key_never_shows_in_debug_output() {
        let key = ApiKey::new("tmprl-secret".into());
        assert!(!format!("{key:?}").contains("tmprl-secret"));
        let pem = Pem::Inline(b"-----BEGIN PRIVATE KEY-----".to_vec());
        assert!(!format!("{pem:?}").contains("PRIVATE"));
    }
}

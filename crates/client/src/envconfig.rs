//! Connecting like every Temporal tool: beneath `[temporal]` (the config file and
//! `CHUM__TEMPORAL__*`), the `TEMPORAL_*` variables, then a profile of the Temporal config file,
//! both read by the SDK's own envconfig loader; then CHUM's defaults.
//!
//! Precedence, per setting: CHUM's configuration > `TEMPORAL_*` > the profile file > defaults.
//! The profile file is `TEMPORAL_CONFIG_FILE`, else `$XDG_CONFIG_HOME/temporalio/temporal.toml`
//! (`~/.config/temporalio/temporal.toml`), the file `temporal config set` writes; its profile is
//! `temporal.profile`, else `TEMPORAL_PROFILE`, else `default`. The API key comes from the
//! environment only, from the variable `temporal.api_key_env` names (`TEMPORAL_API_KEY`).
//!
//! Everything here is a function of the environment passed in (and the files it names), so the
//! layering is tested without touching the process's environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chum_core::config::{ApiKey, ConfigError, Origin, Pem, Setting, TemporalSettings, address_url, tls_wanted};
use temporalio_common::envconfig::{
    ClientConfigProfile, DataSource, LoadClientConfigProfileOptions, load_client_config_profile,
};

/// Lays the `TEMPORAL_*` variables and the profile file beneath what CHUM's configuration set,
/// reads the API key, and checks that every certificate and key named can be read. Errors name
/// the setting where it was set (the file and key, or the variable).
pub fn layer(t: &mut TemporalSettings, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    let c = &mut t.connection;
    let profile_name = match (&c.profile, non_empty(env, "TEMPORAL_PROFILE")) {
        (Some(name), _) => Some(name.clone()),
        (None, Some(name)) => {
            c.origins
                .insert(Setting::Profile, Origin::TemporalEnv("TEMPORAL_PROFILE".into()));
            Some(name)
        }
        (None, None) => None,
    };
    let (file, file_origin) = profile_file(env);
    let mut from_file = ClientConfigProfile::default();
    if let Some(path) = &file {
        let options = LoadClientConfigProfileOptions::builder()
            .config_source(DataSource::Path(path.display().to_string()))
            .maybe_config_file_profile(profile_name.clone())
            .disable_env(true)
            .build();
        from_file = load_client_config_profile(options, Some(env)).map_err(|e| ConfigError::Invalid {
            file: path.display().to_string(),
            key: format!("profile.{}", profile_name.as_deref().unwrap_or("default")),
            reason: format!(
                "{e} (the Temporal config file, from {file_origin}); fix it with `temporal config`, or choose another with temporal.profile / TEMPORAL_PROFILE"
            ),
        })?;
        if from_file != ClientConfigProfile::default() {
            c.profile_file = Some(path.clone());
        }
    }
    let in_profile = Origin::Profile {
        file: file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        profile: profile_name.clone().unwrap_or_else(|| "default".into()),
    };
    let mut from_env = ClientConfigProfile::default();
    from_env.load_from_env(Some(env)).map_err(|e| ConfigError::Invalid {
        file: "the environment".into(),
        key: "TEMPORAL_*".into(),
        reason: format!("{e}; unset one of them"),
    })?;

    // Address and namespace.
    let written = c.written_address.clone();
    let address = pick(
        written.map(|a| (a, None)),
        from_env
            .address
            .clone()
            .map(|a| (a, Some(Origin::TemporalEnv("TEMPORAL_ADDRESS".into())))),
        from_file.address.clone().map(|a| (a, Some(in_profile.clone()))),
    );
    if let Some((_, Some(origin))) = &address {
        c.origins.insert(Setting::Address, origin.clone());
    }
    if let std::collections::btree_map::Entry::Vacant(unset) = c.origins.entry(Setting::Namespace) {
        let namespace = pick(
            None,
            from_env
                .namespace
                .clone()
                .map(|n| (n, Origin::TemporalEnv("TEMPORAL_NAMESPACE".into()))),
            from_file.namespace.clone().map(|n| (n, in_profile.clone())),
        );
        if let Some((namespace, origin)) = namespace {
            t.namespace = namespace;
            unset.insert(origin);
        }
    }

    // TLS: each file and name from the highest layer that sets it.
    let env_tls = from_env.tls.clone().unwrap_or_default();
    let file_tls = from_file.tls.clone().unwrap_or_default();
    for (setting, path_var, data_var, env_value, file_value) in [
        (
            Setting::ServerCa,
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
            "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
            &env_tls.server_ca_cert,
            &file_tls.server_ca_cert,
        ),
        (
            Setting::ClientCert,
            "TEMPORAL_TLS_CLIENT_CERT_PATH",
            "TEMPORAL_TLS_CLIENT_CERT_DATA",
            &env_tls.client_cert,
            &file_tls.client_cert,
        ),
        (
            Setting::ClientKey,
            "TEMPORAL_TLS_CLIENT_KEY_PATH",
            "TEMPORAL_TLS_CLIENT_KEY_DATA",
            &env_tls.client_key,
            &file_tls.client_key,
        ),
    ] {
        let slot = match setting {
            Setting::ServerCa => &mut c.server_ca,
            Setting::ClientCert => &mut c.client_cert,
            _ => &mut c.client_key,
        };
        if slot.is_some() {
            continue;
        }
        let var = if env.contains_key(path_var) { path_var } else { data_var };
        let found = env_value
            .as_ref()
            .map(|d| (pem(d), Origin::TemporalEnv(var.into())))
            .or_else(|| file_value.as_ref().map(|d| (pem(d), in_profile.clone())));
        if let Some((value, origin)) = found {
            *slot = Some(value);
            c.origins.insert(setting, origin);
        }
    }
    if c.server_name.is_none() {
        let found = pick(
            None,
            env_tls
                .server_name
                .clone()
                .map(|n| (n, Origin::TemporalEnv("TEMPORAL_TLS_SERVER_NAME".into()))),
            file_tls.server_name.clone().map(|n| (n, in_profile.clone())),
        );
        if let Some((name, origin)) = found {
            c.server_name = Some(name);
            c.origins.insert(Setting::ServerName, origin);
        }
    }
    if env_tls.disable_host_verification || file_tls.disable_host_verification {
        let (file, key) = if env_tls.disable_host_verification {
            (
                "the environment".to_string(),
                "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION".to_string(),
            )
        } else {
            (
                in_profile_file(&in_profile),
                format!("profile.{}.tls.disable_host_verification", profile_of(&in_profile)),
            )
        };
        return Err(ConfigError::Invalid {
            file,
            key,
            reason: "CHUM never turns off the check of the server's certificate; set temporal.server_name to the name the certificate carries, or temporal.server_ca to the CA that signed it".into(),
        });
    }

    // The API key: from the environment only, from the variable api_key_env names.
    if let Some(key) = non_empty(env, &c.api_key_env) {
        c.api_key = Some(ApiKey::new(key));
        c.origins
            .insert(Setting::ApiKey, Origin::TemporalEnv(c.api_key_env.clone()));
    }
    if from_file.api_key.is_some() {
        c.ignored.push(format!(
            "the api_key of {in_profile}: CHUM reads the API key only from the environment (${}, temporal.api_key_env)",
            c.api_key_env
        ));
    }
    if c.api_key_env != "TEMPORAL_API_KEY" && env.contains_key("TEMPORAL_API_KEY") {
        c.ignored.push(format!(
            "TEMPORAL_API_KEY: temporal.api_key_env names ${} instead",
            c.api_key_env
        ));
    }
    if !from_env.grpc_meta.is_empty() || !from_file.grpc_meta.is_empty() {
        c.ignored
            .push("gRPC metadata (TEMPORAL_GRPC_META_*, a profile's grpc_meta): not sent by CHUM".into());
    }

    // Whether TLS is on: the highest explicit word, else implied.
    // A scheme written in CHUM's own address is CHUM's word on TLS too.
    let written_scheme = c
        .written_address
        .as_deref()
        .and_then(|a| a.split_once("://"))
        .map(|(scheme, _)| scheme == "https");
    let explicit = match c.written_tls.or(written_scheme) {
        Some(on) => Some((on, None)),
        None => env_tls
            .disabled
            .map(|off| (!off, Some(Origin::TemporalEnv("TEMPORAL_TLS".into()))))
            .or_else(|| {
                from_file
                    .tls
                    .as_ref()
                    .and_then(|t| t.disabled)
                    .map(|off| (!off, Some(in_profile.clone())))
            }),
    };
    if let Some((_, Some(origin))) = &explicit {
        c.origins.insert(Setting::Tls, origin.clone());
    }
    let section = from_env.tls.is_some() || from_file.tls.is_some();
    let given = section
        || c.server_ca.is_some()
        || c.client_cert.is_some()
        || c.client_key.is_some()
        || c.server_name.is_some();
    let address_text = address
        .as_ref()
        .map(|(a, _)| a.clone())
        .unwrap_or_else(|| chum_core::config::DEFAULT_ADDRESS.to_string());
    c.tls = tls_wanted(explicit.map(|(on, _)| on), given, c.api_key.is_some(), &address_text);
    t.address = address_url(&address_text, c.tls).map_err(|reason| {
        let (file, key) = where_set(c.origins.get(&Setting::Address), "temporal.address");
        ConfigError::Invalid { file, key, reason }
    })?;
    if !c.tls && (given || c.api_key.is_some()) {
        c.ignored.push(
            "certificates, server name and API key: TLS is off (tls = false, or an http:// address), so none is used"
                .into(),
        );
    }
    check_files(c)
}

/// The certificates and key named are readable PEM, and a client certificate comes with its key.
fn check_files(c: &chum_core::config::ConnectionSettings) -> Result<(), ConfigError> {
    if !c.tls {
        return Ok(());
    }
    match (&c.client_cert, &c.client_key) {
        (Some(_), None) | (None, Some(_)) => {
            let (have, missing) = if c.client_cert.is_some() {
                (Setting::ClientCert, "client_key")
            } else {
                (Setting::ClientKey, "client_cert")
            };
            let (file, key) = where_set(c.origins.get(&have), &format!("temporal.{}", have.key()));
            return Err(ConfigError::Invalid {
                file,
                key,
                reason: format!(
                    "a client certificate needs its key and the key its certificate; set temporal.{missing} too"
                ),
            });
        }
        _ => {}
    }
    for (setting, value, marker, what) in [
        (
            Setting::ServerCa,
            &c.server_ca,
            "CERTIFICATE",
            "a PEM certificate (-----BEGIN CERTIFICATE-----)",
        ),
        (
            Setting::ClientCert,
            &c.client_cert,
            "CERTIFICATE",
            "a PEM certificate (-----BEGIN CERTIFICATE-----)",
        ),
        (
            Setting::ClientKey,
            &c.client_key,
            "PRIVATE KEY",
            "a PEM private key (-----BEGIN PRIVATE KEY-----)",
        ),
    ] {
        let Some(pem) = value else { continue };
        let (file, key) = where_set(c.origins.get(&setting), &format!("temporal.{}", setting.key()));
        let hint = match c.origins.get(&setting) {
            Some(Origin::File { .. }) => " (relative paths in chum.toml start from its directory)",
            _ => "",
        };
        let bytes = read_pem(pem).map_err(|e| ConfigError::Invalid {
            file: file.clone(),
            key: key.clone(),
            reason: format!("cannot read {pem}: {e}; check the path{hint}"),
        })?;
        let text = String::from_utf8_lossy(&bytes);
        if !(text.contains("-----BEGIN") && text.contains(marker)) {
            return Err(ConfigError::Invalid {
                file,
                key,
                reason: format!("{pem} is not {what}"),
            });
        }
    }
    Ok(())
}

/// The bytes of a PEM setting.
pub fn read_pem(pem: &Pem) -> std::io::Result<Vec<u8>> {
    match pem {
        Pem::Path(path) => std::fs::read(path),
        Pem::Inline(data) => Ok(data.clone()),
    }
}

/// What was loaded from where, one line each, never a secret: for `chum doctor` and
/// `worker --check`.
pub fn describe(t: &TemporalSettings) -> Vec<String> {
    let c = &t.connection;
    let from = |setting: Setting| match c.origins.get(&setting) {
        Some(origin) => format!("(from {origin})"),
        None => "(default)".to_string(),
    };
    let mut lines = vec![
        format!("address {} {}", t.address, from(Setting::Address)),
        format!("namespace {} {}", t.namespace, from(Setting::Namespace)),
    ];
    if let Some(file) = &c.profile_file {
        let name = c.profile.clone().unwrap_or_else(|| "default".into());
        lines.push(format!(
            "profile {name} of {} {}",
            file.display(),
            from(Setting::Profile)
        ));
    }
    let tls = match (c.tls, c.origins.get(&Setting::Tls)) {
        (on, Some(origin)) => format!("TLS {} (from {origin})", if on { "on" } else { "off" }),
        (true, None) if c.api_key.is_some() && c.server_ca.is_none() && c.client_cert.is_none() => {
            "TLS on (an API key is set)".to_string()
        }
        (true, None) if t.address.starts_with("https://") && c.written_address.is_some() => {
            "TLS on (the address is https://)".to_string()
        }
        (true, None) => "TLS on (certificates or a server name are set)".to_string(),
        (false, None) if c.written_address.as_deref().is_some_and(|a| a.starts_with("http://")) => {
            "TLS off (the address is http://)".to_string()
        }
        (false, None) => "TLS off (default)".to_string(),
    };
    lines.push(tls);
    if c.tls {
        lines.push(match &c.server_ca {
            Some(ca) => format!("TLS: server CA {ca} {}", from(Setting::ServerCa)),
            None => "TLS: server CA: the system's roots".to_string(),
        });
        if let (Some(cert), Some(key)) = (&c.client_cert, &c.client_key) {
            lines.push(format!("TLS: client certificate {cert} {}", from(Setting::ClientCert)));
            lines.push(format!("TLS: client key {key} {}", from(Setting::ClientKey)));
        } else {
            lines.push("TLS: no client certificate".to_string());
        }
        if let Some(name) = &c.server_name {
            lines.push(format!("TLS: server name {name} {}", from(Setting::ServerName)));
        }
    }
    lines.push(match &c.api_key {
        Some(_) => format!("API key: set (from ${})", c.api_key_env),
        None => format!("API key: none (${} is not set)", c.api_key_env),
    });
    lines.push(match &t.codec {
        Some(codec) => format!(
            "payload codec: aes-256-gcm on, encrypts with key {}, decrypts with keys {} (from {})",
            codec.encrypt_with,
            codec.key_ids().collect::<Vec<_>>().join(", "),
            codec
                .key_envs
                .values()
                .map(|v| format!("${v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "payload codec: off (payloads are stored in clear; see [temporal.codec])".to_string(),
    });
    for what in &c.ignored {
        lines.push(format!("ignored: {what}"));
    }
    lines
}

/// The Temporal config file to read, and why that one.
fn profile_file(env: &HashMap<String, String>) -> (Option<PathBuf>, String) {
    if let Some(path) = non_empty(env, "TEMPORAL_CONFIG_FILE") {
        return (Some(PathBuf::from(path)), "TEMPORAL_CONFIG_FILE".into());
    }
    let dir = non_empty(env, "XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| non_empty(env, "HOME").map(|home| Path::new(&home).join(".config")));
    (
        dir.map(|d| d.join("temporalio/temporal.toml")),
        "the default location".into(),
    )
}

fn non_empty(env: &HashMap<String, String>, name: &str) -> Option<String> {
    env.get(name).filter(|v| !v.trim().is_empty()).cloned()
}

fn pem(source: &DataSource) -> Pem {
    match source {
        DataSource::Path(path) => Pem::Path(PathBuf::from(path)),
        DataSource::Data(data) => Pem::Inline(data.clone()),
        // DataSource is non-exhaustive; a kind this version does not know reads as no data.
        _ => Pem::Inline(Vec::new()),
    }
}

/// The highest layer's value: CHUM's own (its origin already recorded), the environment, the file.
fn pick<T>(chum: Option<T>, env: Option<T>, file: Option<T>) -> Option<T> {
    chum.or(env).or(file)
}

/// The file and key (or "the environment" and the variable) to name in an error.
fn where_set(origin: Option<&Origin>, default_key: &str) -> (String, String) {
    match origin {
        Some(Origin::File { file, key }) => (file.clone(), key.clone()),
        Some(Origin::ChumEnv(var) | Origin::TemporalEnv(var)) => ("the environment".into(), var.clone()),
        Some(profile @ Origin::Profile { .. }) => (
            in_profile_file(profile),
            format!(
                "profile.{}.{}",
                profile_of(profile),
                default_key.trim_start_matches("temporal.")
            ),
        ),
        Some(Origin::Default) | None => ("CHUM's defaults".into(), default_key.into()),
    }
}

fn in_profile_file(origin: &Origin) -> String {
    match origin {
        Origin::Profile { file, .. } => file.clone(),
        other => other.to_string(),
    }
}

fn profile_of(origin: &Origin) -> String {
    match origin {
        Origin::Profile { profile, .. } => profile.clone(),
        _ => "default".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::load_config_with_env;
    use chum_core::config::ChumConfig;

    const BASE: &str = "[projects.demo]\nrepo = \"demo\"\ndod = [\"true\"]\n[providers.a]\ncommand = [\"a\"]\n[providers.b]\ncommand = [\"b\"]\n[tiers]\nt = [\"a\"]\nr = [\"b\"]\n[roles]\nplanner = \"t\"\nexecutor = \"t\"\nreviewer = \"r\"\n";
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

    /// A directory with chum.toml (`[temporal]` = `section`), a Temporal profile file and PEM files.
    struct World {
        dir: tempfile::TempDir,
    }

    impl World {
        fn new(section: &str, profiles: &str) -> World {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("written");
            write("chum.toml", &format!("[temporal]\n{section}\n{BASE}"));
            std::fs::create_dir_all(dir.path().join("xdg/temporalio")).expect("made");
            write("xdg/temporalio/temporal.toml", profiles);
            write("ca.pem", CERT);
            write("client.pem", CERT);
            write("client.key", KEY);
            World { dir }
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }

        fn load(&self, env: &[(&str, &str)]) -> Result<ChumConfig, ConfigError> {
            let mut vars: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            vars.insert("XDG_CONFIG_HOME".into(), self.path("xdg"));
            load_config_with_env(&self.dir.path().join("chum.toml"), &vars)
        }
    }

    #[test]
    fn chum_config_beats_temporal_variables_which_beat_the_profile_file() {
        let w = World::new(
            "namespace = \"from-chum\"",
            "[profile.default]\naddress = \"profile.example:7233\"\nnamespace = \"from-profile\"\n[profile.default.tls]\nserver_name = \"temporal.example\"\n",
        );
        let profile_file = w.path("xdg/temporalio/temporal.toml");

        let t = w.load(&[]).expect("loads").temporal;
        assert_eq!(t.address, "https://profile.example:7233", "a [tls] section means TLS");
        assert_eq!(t.namespace, "from-chum");
        let c = &t.connection;
        assert_eq!(
            c.origins[&Setting::Address],
            Origin::Profile {
                file: profile_file.clone(),
                profile: "default".into()
            }
        );
        assert_eq!(c.server_name.as_deref(), Some("temporal.example"));

        let t = w
            .load(&[
                ("TEMPORAL_ADDRESS", "env.example:7233"),
                ("TEMPORAL_NAMESPACE", "from-env"),
            ])
            .expect("loads")
            .temporal;
        assert_eq!(t.address, "https://env.example:7233");
        assert_eq!(t.namespace, "from-chum", "the config file's namespace wins");
        assert_eq!(
            t.connection.origins[&Setting::Address],
            Origin::TemporalEnv("TEMPORAL_ADDRESS".into())
        );
        let lines = describe(&t);
        assert!(
            lines.contains(&"address https://env.example:7233 (from TEMPORAL_ADDRESS)".to_string()),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("namespace from-chum (from ") && l.ends_with("chum.toml temporal.namespace)")),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&format!(
                "TLS: server name temporal.example (from profile default of {profile_file})"
            )),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_named_profile_is_used_and_a_missing_one_is_an_error_naming_the_file() {
        let w = World::new(
            "",
            "[profile.default]\naddress = \"a:1\"\n[profile.staging]\naddress = \"staging:7233\"\n",
        );
        let t = w.load(&[("TEMPORAL_PROFILE", "staging")]).expect("loads").temporal;
        assert_eq!(t.address, "http://staging:7233");
        let w = World::new("profile = \"prod\"", "[profile.default]\naddress = \"a:1\"\n");
        let err = w.load(&[]).expect_err("no such profile");
        assert_eq!(err.key(), Some("profile.prod"), "{err}");
        assert!(
            err.to_string().contains(&w.path("xdg/temporalio/temporal.toml")),
            "{err}"
        );
    }

    #[test]
    fn the_api_key_comes_from_the_environment_only_and_is_never_shown() {
        let w = World::new(
            "address = \"ns.acct.tmprl.cloud:7233\"",
            "[profile.default]\napi_key = \"from-a-file\"\n",
        );
        let t = w
            .load(&[("TEMPORAL_API_KEY", "tmprl-secret-key")])
            .expect("loads")
            .temporal;
        assert!(t.connection.tls, "an API key means TLS");
        assert_eq!(t.address, "https://ns.acct.tmprl.cloud:7233");
        assert_eq!(
            t.connection.api_key.as_ref().map(ApiKey::expose),
            Some("tmprl-secret-key")
        );
        let shown = format!("{:#?}\n{}", t, describe(&t).join("\n"));
        assert!(
            !shown.contains("tmprl-secret-key") && !shown.contains("from-a-file"),
            "{shown}"
        );
        assert!(shown.contains("API key: set (from $TEMPORAL_API_KEY)"), "{shown}");
        assert!(shown.contains("ignored: the api_key of profile default"), "{shown}");

        let w = World::new("api_key_env = \"CLOUD_KEY\"", "");
        let t = w.load(&[("TEMPORAL_API_KEY", "other")]).expect("loads").temporal;
        assert!(
            t.connection.api_key.is_none(),
            "only the variable api_key_env names counts"
        );
        assert!(describe(&t).contains(&"API key: none ($CLOUD_KEY is not set)".to_string()));
    }

    #[test]
    fn certificates_are_checked_where_they_were_set() {
        let w = World::new(
            "server_ca = \"ca.pem\"\nclient_cert = \"client.pem\"\nclient_key = \"client.key\"",
            "",
        );
        let t = w.load(&[]).expect("loads").temporal;
        assert_eq!(
            t.connection.client_key,
            Some(Pem::Path(w.dir.path().join("client.key")))
        );
        assert!(
            describe(&t)
                .iter()
                .any(|l| l.starts_with("TLS: client certificate ") && l.ends_with("temporal.client_cert)"))
        );

        let w = World::new("server_ca = \"missing.pem\"", "");
        let err = w.load(&[]).expect_err("no such file");
        assert_eq!(err.key(), Some("temporal.server_ca"), "{err}");
        assert!(
            err.to_string().contains("missing.pem") && err.to_string().contains("chum.toml"),
            "{err}"
        );

        let w = World::new("server_ca = \"client.key\"", "");
        let err = w.load(&[]).expect_err("a key is not a certificate");
        assert!(err.to_string().contains("is not a PEM certificate"), "{err}");

        let w = World::new("tls = true", "");
        let err = w
            .load(&[("TEMPORAL_TLS_CLIENT_CERT_PATH", &w.path("client.pem"))])
            .expect_err("a certificate without its key");
        assert_eq!(err.key(), Some("TEMPORAL_TLS_CLIENT_CERT_PATH"), "{err}");
        assert!(err.to_string().contains("client_key"), "{err}");
    }

    #[test]
    fn an_http_address_in_chum_config_keeps_tls_off_whatever_lower_layers_imply() {
        let w = World::new(
            "address = \"http://127.0.0.1:7233\"",
            "[profile.default.tls]\nserver_name = \"cloud.example\"\n",
        );
        let t = w.load(&[("TEMPORAL_API_KEY", "k")]).expect("loads").temporal;
        assert!(!t.connection.tls);
        assert_eq!(t.address, "http://127.0.0.1:7233");
        let lines = describe(&t);
        assert!(
            lines.contains(&"TLS off (the address is http://)".to_string()),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("ignored: certificates, server name and API key")),
            "{lines:#?}"
        );
        let options = crate::connect::connection_options(&t, "test").expect("options");
        assert!(options.api_key.is_none(), "a key is never sent without TLS");
    }

    #[test]
    fn host_verification_is_never_turned_off() {
        let w = World::new("", "");
        let err = w
            .load(&[("TEMPORAL_TLS_DISABLE_HOST_VERIFICATION", "true")])
            .expect_err("refused");
        assert_eq!(err.key(), Some("TEMPORAL_TLS_DISABLE_HOST_VERIFICATION"));
    }
}

//! `[temporal.codec]`: payloads encrypted before they reach Temporal.
//!
//! The file names key ids and the environment variables that hold the keys (base64, 32 bytes);
//! never a key. Several keys make rotation: the one `encrypt_with` names encrypts, every listed
//! key decrypts what it encrypted. The keys themselves are read from the environment by
//! `chum_client`'s loader (this crate does no I/O) into [`CodecSettings::keys`].

use std::collections::BTreeMap;
use std::fmt;

use super::ConfigError;
use super::raw::RawCodec;
use super::validate::Validator;

/// The one codec there is: AES-256-GCM, in the encoding of Temporal's samples and codec servers.
pub const AES_256_GCM: &str = "aes-256-gcm";

/// A key's length in bytes (AES-256).
pub const CODEC_KEY_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub struct CodecSettings {
    /// The key id that encrypts every new payload.
    pub encrypt_with: String,
    /// Key id -> the environment variable holding that key (base64 of 32 bytes).
    pub key_envs: BTreeMap<String, String>,
    /// Key id -> the key, once read from the environment (`chum_client::settings::load_config`).
    pub keys: BTreeMap<String, CodecKey>,
}

impl CodecSettings {
    /// The key ids that decrypt, in order.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.key_envs.keys().map(String::as_str)
    }
}

/// A codec key: never shown, in `Debug` or anywhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct CodecKey([u8; CODEC_KEY_LEN]);

impl CodecKey {
    pub fn new(bytes: [u8; CODEC_KEY_LEN]) -> CodecKey {
        CodecKey(bytes)
    }

    /// The key itself, for the one place that uses it (the cipher).
    pub fn expose(&self) -> &[u8; CODEC_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for CodecKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodecKey(<redacted>)")
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Validator {
    /// `[temporal.codec]`, checked: the kind, the key ids and their variables, which key encrypts.
    pub(super) fn codec(&self, raw: Option<RawCodec>) -> Result<Option<CodecSettings>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        match raw.kind.as_deref() {
            Some(AES_256_GCM) => {}
            Some(other) => {
                return Err(self.invalid(
                    "temporal.codec.kind",
                    format!("{other:?} is not a codec CHUM has; write \"{AES_256_GCM}\""),
                ));
            }
            None => {
                return Err(self.invalid(
                    "temporal.codec.kind",
                    format!("is missing; write kind = \"{AES_256_GCM}\" (or remove [temporal.codec] to send payloads in clear)"),
                ));
            }
        }
        if raw.keys.is_empty() {
            return Err(self.invalid(
                "temporal.codec.keys",
                "names no key; write keys = { k1 = \"CHUM_CODEC_KEY_K1\" } (a key id and the environment variable holding a base64 32-byte key)",
            ));
        }
        for (id, var) in &raw.keys {
            let key = format!("temporal.codec.keys.{id}");
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(self.invalid(
                    key,
                    format!("{id:?} is not a key id; use letters, digits, '-', '_' or '.', e.g. \"k1\" or \"2026-12\""),
                ));
            }
            if !is_env_name(var) {
                return Err(self.invalid(
                    key,
                    format!("{var:?} is not an environment variable name; name the variable that holds the key (never the key itself), e.g. \"CHUM_CODEC_KEY_{}\"", id.to_ascii_uppercase().replace(['-', '.'], "_")),
                ));
            }
        }
        let encrypt_with = match raw.encrypt_with {
            Some(id) if raw.keys.contains_key(&id) => id,
            Some(id) => {
                return Err(self.invalid(
                    "temporal.codec.encrypt_with",
                    format!(
                        "{id:?} is not one of the keys ({}); name the key id that encrypts new payloads",
                        raw.keys.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            None if raw.keys.len() == 1 => raw.keys.keys().next().cloned().unwrap_or_default(),
            None => {
                return Err(self.invalid(
                    "temporal.codec.encrypt_with",
                    "is missing and there are several keys; name the key id that encrypts new payloads (the newest)",
                ));
            }
        };
        Ok(Some(CodecSettings {
            encrypt_with,
            key_envs: raw.keys,
            keys: BTreeMap::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChumConfig;
    use std::path::Path;

    fn codec(section: &str) -> Result<Option<CodecSettings>, ConfigError> {
        let text = format!(
            "[temporal.codec]\n{section}\n[projects.demo]\nrepo = \"demo\"\ndod = [\"true\"]\n[providers.a]\ncommand = [\"a\"]\n[providers.b]\ncommand = [\"b\"]\n[tiers]\nt = [\"a\"]\nr = [\"b\"]\n[roles]\nplanner = \"t\"\nexecutor = \"t\"\nreviewer = \"r\"\n"
        );
        ChumConfig::from_toml(&text, Path::new("/etc/chum/chum.toml"), std::iter::empty()).map(|c| c.temporal.codec)
    }

    #[test]
    fn the_newest_key_encrypts_and_every_key_decrypts() {
        let c = codec("kind = \"aes-256-gcm\"\nencrypt_with = \"k2\"\nkeys = { k1 = \"KEY_ONE\", k2 = \"KEY_TWO\" }")
            .unwrap()
            .unwrap();
        assert_eq!(c.encrypt_with, "k2");
        assert_eq!(c.key_ids().collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(c.key_envs["k1"], "KEY_ONE");
        let one = codec("kind = \"aes-256-gcm\"\nkeys = { k1 = \"KEY_ONE\" }")
            .unwrap()
            .unwrap();
        assert_eq!(one.encrypt_with, "k1", "a single key encrypts without saying so");
    }

    #[test]
    fn a_codec_section_that_cannot_work_names_the_key_and_what_to_write() {
        let err = codec("kind = \"rot13\"\nkeys = { k1 = \"K\" }").unwrap_err();
        assert_eq!(err.key(), Some("temporal.codec.kind"));
        assert!(err.to_string().contains("aes-256-gcm"), "{err}");
        let err = codec("kind = \"aes-256-gcm\"").unwrap_err();
        assert_eq!(err.key(), Some("temporal.codec.keys"));
        let err = codec("kind = \"aes-256-gcm\"\nkeys = { k1 = \"A\", k2 = \"B\" }").unwrap_err();
        assert_eq!(err.key(), Some("temporal.codec.encrypt_with"));
        let err =
            codec("kind = \"aes-256-gcm\"\nencrypt_with = \"k3\"\nkeys = { k1 = \"A\", k2 = \"B\" }").unwrap_err();
        assert!(err.to_string().contains("k1, k2"), "{err}");
        let err = codec("kind = \"aes-256-gcm\"\nkeys = { k1 = \"q2VLtdn0vUIRd6X/2bX+/A==\" }").unwrap_err();
        assert_eq!(err.key(), Some("temporal.codec.keys.k1"));
        assert!(err.to_string().contains("never the key itself"), "{err}");
        let err = codec("kind = \"aes-256-gcm\"\nnonce = \"x\"\nkeys = { k1 = \"A\" }").unwrap_err();
        assert_eq!(err.key(), Some("temporal.codec.nonce"), "an unknown key: {err}");
    }

    #[test]
    fn no_agent_is_ever_given_a_keys_variable() {
        let err = codec("kind = \"aes-256-gcm\"\nkeys = { k1 = \"PAYLOAD_KEY\" }\n[providers.c]\ncommand = [\"c\"]\npass_env = [\"PAYLOAD_KEY\"]")
            .unwrap_err();
        assert_eq!(err.key(), Some("providers.c.pass_env"), "{err}");
        assert!(err.to_string().contains("key of [temporal.codec]"), "{err}");
    }

    #[test]
    fn a_key_never_shows_in_debug_output() {
        let key = CodecKey::new([7; CODEC_KEY_LEN]);
        assert_eq!(format!("{key:?}"), "CodecKey(<redacted>)");
    }
}

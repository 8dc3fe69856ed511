//! `[temporal.codec]`: every payload AES-256-GCM encrypted before it reaches Temporal, in the
//! encoding Temporal's samples and codec servers use, so another SDK's codec server with the same
//! key reads CHUM's payloads and CHUM reads theirs:
//!
//! - metadata `encoding` = `binary/encrypted`, `encryption-key-id` = the key id;
//! - data = a 12-byte random nonce, then the ciphertext and tag of the original payload
//!   serialized as the protobuf `Payload` (its metadata and data).
//!
//! Decoding leaves a payload that is not `binary/encrypted` as it is: runs started before the
//! codec was turned on, and histories recorded in clear, still read. Keys come from the
//! environment only ([`load_keys`]); the newest (`encrypt_with`) encrypts, every listed key
//! decrypts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chum_core::config::{CODEC_KEY_LEN, CodecKey, CodecSettings, ConfigError};
use futures::future::BoxFuture;
use prost::Message;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use temporalio_common::data_converters::{
    DataConverter, DefaultFailureConverter, PayloadCodec, PayloadConversionError, PayloadConverter,
    SerializationContextData,
};
use temporalio_common::protos::temporal::api::common::v1::Payload;

/// The `encoding` of an encrypted payload.
pub const ENCRYPTED_ENCODING: &[u8] = b"binary/encrypted";
/// The metadata key naming the key that encrypted a payload.
pub const KEY_ID_METADATA: &str = "encryption-key-id";

/// Why a payload could not be encrypted or decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error(
        "a payload is encrypted with key id {key_id:?}, which this process does not have (it has {loaded}); add {key_id:?} to [temporal.codec] keys with the variable holding that key"
    )]
    UnknownKey { key_id: String, loaded: String },
    #[error(
        "a payload encrypted with key id {key_id:?} does not decrypt with the key in ${var}: that variable holds another key than the one that encrypted it (or the payload was altered); set ${var} to the key {key_id:?} was"
    )]
    WrongKey { key_id: String, var: String },
    #[error(
        "a payload is marked binary/encrypted but carries no {KEY_ID_METADATA} metadata; it was not written by a Temporal encryption codec"
    )]
    NoKeyId,
    #[error("a payload encrypted with key id {key_id:?} is too short to hold a nonce and a tag ({len} bytes)")]
    Truncated { key_id: String, len: usize },
    #[error(
        "a payload encrypted with key id {key_id:?} decrypts to something that is not a Temporal payload: {detail}"
    )]
    NotAPayload { key_id: String, detail: String },
    #[error("the system's random source failed; no payload can be encrypted")]
    Random,
}

/// The environment variable `var` as a codec key, or a config error naming the key id and the
/// variable and saying what to put there.
pub fn read_key(file: &str, key_id: &str, var: &str, env: &HashMap<String, String>) -> Result<CodecKey, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        file: file.to_string(),
        key: format!("temporal.codec.keys.{key_id}"),
        reason,
    };
    let how = "generate one with `head -c 32 /dev/urandom | base64`";
    let text = env.get(var).map(|v| v.trim()).filter(|v| !v.is_empty()).ok_or_else(|| {
        invalid(format!(
            "key {key_id:?}: ${var} is not set; set it to the base64 of a 32-byte key ({how}), or remove {key_id:?} from the keys"
        ))
    })?;
    let bytes = STANDARD.decode(text).map_err(|e| {
        invalid(format!(
            "key {key_id:?}: ${var} is not base64 ({e}); it must hold the base64 of a 32-byte key ({how})"
        ))
    })?;
    let bytes: [u8; CODEC_KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
        invalid(format!(
            "key {key_id:?}: ${var} holds {} bytes, AES-256 needs {CODEC_KEY_LEN} ({how})",
            bytes.len()
        ))
    })?;
    Ok(CodecKey::new(bytes))
}

/// Reads every key `[temporal.codec]` names from `env` into `codec.keys`.
pub fn load_keys(file: &str, codec: &mut CodecSettings, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    let mut keys = BTreeMap::new();
    for (id, var) in &codec.key_envs {
        keys.insert(id.clone(), read_key(file, id, var, env)?);
    }
    codec.keys = keys;
    Ok(())
}

struct Key {
    cipher: LessSafeKey,
    var: String,
}

/// The AES-256-GCM payload codec: encrypts with one key, decrypts with any loaded key.
pub struct AesGcmCodec {
    encrypt_with: String,
    keys: BTreeMap<String, Key>,
    random: SystemRandom,
}

impl std::fmt::Debug for AesGcmCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AesGcmCodec")
            .field("encrypt_with", &self.encrypt_with)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl AesGcmCodec {
    /// The codec for loaded settings. A key id without its key (the settings were not loaded
    /// through `load_config`) is a config error, as the loader would have said.
    pub fn new(settings: &CodecSettings) -> Result<AesGcmCodec, String> {
        let mut keys = BTreeMap::new();
        for (id, var) in &settings.key_envs {
            let key = settings
                .keys
                .get(id)
                .ok_or_else(|| format!("[temporal.codec] key {id:?}: ${var} was not read"))?;
            let unbound = UnboundKey::new(&AES_256_GCM, key.expose())
                .map_err(|_| format!("[temporal.codec] key {id:?}: not an AES-256 key"))?;
            keys.insert(
                id.clone(),
                Key {
                    cipher: LessSafeKey::new(unbound),
                    var: var.clone(),
                },
            );
        }
        if !keys.contains_key(&settings.encrypt_with) {
            return Err(format!(
                "[temporal.codec] encrypt_with {:?} is not one of the keys",
                settings.encrypt_with
            ));
        }
        Ok(AesGcmCodec {
            encrypt_with: settings.encrypt_with.clone(),
            keys,
            random: SystemRandom::new(),
        })
    }

    /// The key id that encrypts.
    pub fn encrypt_with(&self) -> &str {
        &self.encrypt_with
    }

    /// `payload` encrypted with the `encrypt_with` key.
    pub fn encrypt(&self, payload: &Payload) -> Result<Payload, CodecError> {
        let key = &self.keys[&self.encrypt_with];
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| CodecError::Random)?;
        let mut sealed = payload.encode_to_vec();
        key.cipher
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut sealed)
            .map_err(|_| CodecError::Random)?;
        let mut data = nonce.to_vec();
        data.append(&mut sealed);
        Ok(Payload {
            metadata: HashMap::from([
                ("encoding".to_string(), ENCRYPTED_ENCODING.to_vec()),
                (KEY_ID_METADATA.to_string(), self.encrypt_with.as_bytes().to_vec()),
            ]),
            data,
            ..Default::default()
        })
    }

    /// `payload` decrypted when it is encrypted, else as it is.
    pub fn decrypt(&self, payload: Payload) -> Result<Payload, CodecError> {
        if !is_encrypted(&payload) {
            return Ok(payload);
        }
        let key_id = payload
            .metadata
            .get(KEY_ID_METADATA)
            .map(|id| String::from_utf8_lossy(id).into_owned())
            .ok_or(CodecError::NoKeyId)?;
        let key = self.keys.get(&key_id).ok_or_else(|| CodecError::UnknownKey {
            key_id: key_id.clone(),
            loaded: self.keys.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        if payload.data.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(CodecError::Truncated {
                key_id,
                len: payload.data.len(),
            });
        }
        let (nonce, sealed) = payload.data.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CodecError::Truncated {
            key_id: key_id.clone(),
            len: payload.data.len(),
        })?;
        let mut sealed = sealed.to_vec();
        let plain = key
            .cipher
            .open_in_place(nonce, Aad::empty(), &mut sealed)
            .map_err(|_| CodecError::WrongKey {
                key_id: key_id.clone(),
                var: key.var.clone(),
            })?;
        Payload::decode(&plain[..]).map_err(|e| CodecError::NotAPayload {
            key_id,
            detail: e.to_string(),
        })
    }

    pub fn encrypt_all(&self, payloads: &[Payload]) -> Result<Vec<Payload>, CodecError> {
        payloads.iter().map(|p| self.encrypt(p)).collect()
    }

    pub fn decrypt_all(&self, payloads: Vec<Payload>) -> Result<Vec<Payload>, CodecError> {
        payloads.into_iter().map(|p| self.decrypt(p)).collect()
    }
}

/// Whether `payload` is marked `binary/encrypted`.
pub fn is_encrypted(payload: &Payload) -> bool {
    payload
        .metadata
        .get("encoding")
        .is_some_and(|e| e == ENCRYPTED_ENCODING)
}

/// The SDK's codec, sharing one [`AesGcmCodec`] with the codec endpoint.
#[derive(Debug, Clone)]
pub struct SharedCodec(pub Arc<AesGcmCodec>);

impl PayloadCodec for SharedCodec {
    fn encode(
        &self,
        _: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let result = self
            .0
            .encrypt_all(&payloads)
            .map_err(|e| PayloadConversionError::EncodingError(Box::new(e)));
        Box::pin(async move { result })
    }

    fn decode(
        &self,
        _: &SerializationContextData,
        payloads: Vec<Payload>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, PayloadConversionError>> {
        let result = self
            .0
            .decrypt_all(payloads)
            .map_err(|e| PayloadConversionError::EncodingError(Box::new(e)));
        Box::pin(async move { result })
    }
}

/// The data converter for `codec`: the SDK's default payload and failure converters, with the
/// encryption codec when there is one.
pub fn data_converter(codec: Option<&Arc<AesGcmCodec>>) -> DataConverter {
    match codec {
        Some(codec) => DataConverter::new(
            PayloadConverter::default(),
            DefaultFailureConverter::default(),
            SharedCodec(codec.clone()),
        ),
        None => DataConverter::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    const K2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

    fn settings(encrypt_with: &str, keys: &[(&str, &str, &str)]) -> CodecSettings {
        let mut s = CodecSettings {
            encrypt_with: encrypt_with.into(),
            key_envs: keys
                .iter()
                .map(|(id, var, _)| (id.to_string(), var.to_string()))
                .collect(),
            keys: BTreeMap::new(),
        };
        let env = keys
            .iter()
            .map(|(_, var, key)| (var.to_string(), key.to_string()))
            .collect();
        load_keys("chum.toml", &mut s, &env).expect("keys load");
        s
    }

    fn codec(encrypt_with: &str, keys: &[(&str, &str, &str)]) -> AesGcmCodec {
        AesGcmCodec::new(&settings(encrypt_with, keys)).expect("codec")
    }

    fn plan() -> Payload {
        Payload {
            metadata: HashMap::from([("encoding".to_string(), b"json/plain".to_vec())]),
            data: br#"{"plan":"rotate the launch code 0000"}"#.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn an_encrypted_payload_holds_no_plaintext_and_names_its_key() {
        let c = codec("k1", &[("k1", "KEY_ONE", K1)]);
        let sealed = c.encrypt(&plan()).unwrap();
        assert_eq!(sealed.metadata["encoding"], ENCRYPTED_ENCODING);
        assert_eq!(sealed.metadata[KEY_ID_METADATA], b"k1");
        assert!(!String::from_utf8_lossy(&sealed.data).contains("launch code"));
        assert_eq!(c.decrypt(sealed).unwrap(), plan());
        assert_ne!(
            c.encrypt(&plan()).unwrap().data,
            c.encrypt(&plan()).unwrap().data,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn after_rotation_the_newest_key_encrypts_and_the_old_one_still_decrypts() {
        let before = codec("k1", &[("k1", "KEY_ONE", K1)]);
        let old = before.encrypt(&plan()).unwrap();
        let after = codec("k2", &[("k1", "KEY_ONE", K1), ("k2", "KEY_TWO", K2)]);
        assert_eq!(after.decrypt(old).unwrap(), plan());
        let new = after.encrypt(&plan()).unwrap();
        assert_eq!(new.metadata[KEY_ID_METADATA], b"k2");
        assert_eq!(
            before.decrypt(new).unwrap_err(),
            CodecError::UnknownKey {
                key_id: "k2".into(),
                loaded: "k1".into()
            }
        );
    }

    #[test]
    fn a_wrong_key_under_the_same_id_says_which_id_and_variable() {
        let right = codec("k1", &[("k1", "KEY_ONE", K1)]);
        let wrong = codec("k1", &[("k1", "KEY_ONE", K2)]);
        let err = wrong.decrypt(right.encrypt(&plan()).unwrap()).unwrap_err();
        assert!(err.to_string().contains("key id \"k1\""), "{err}");
        assert!(err.to_string().contains("$KEY_ONE"), "{err}");
    }

    /// What Temporal's Python sample codec writes (`nonce + AESGCM(key).encrypt(nonce,
    /// payload.SerializeToString(), None)`), made with the `cryptography` package: CHUM reads
    /// other SDKs' encrypted payloads, so its codec endpoint and theirs are interchangeable.
    #[test]
    fn a_payload_encrypted_by_another_sdks_codec_decrypts() {
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let c = codec("py", &[("py", "PY_KEY", key)]);
        let sealed = Payload {
            metadata: HashMap::from([
                ("encoding".to_string(), ENCRYPTED_ENCODING.to_vec()),
                (KEY_ID_METADATA.to_string(), b"py".to_vec()),
            ]),
            data: STANDARD
                .decode("ZGVmZ2hpamtsbW5vQg3UbhyHNfFaCzGPyG8Aji2sKXrnDZoctdaOIJ7PySe2p1RrdhRQaJpZkftx94RIvQ==")
                .unwrap(),
            ..Default::default()
        };
        let plain = c.decrypt(sealed).unwrap();
        assert_eq!(plain.metadata["encoding"], b"json/plain");
        assert_eq!(plain.data, br#""hello""#);
    }

    #[test]
    fn a_payload_in_clear_decodes_as_it_is() {
        let c = codec("k1", &[("k1", "KEY_ONE", K1)]);
        assert_eq!(c.decrypt(plan()).unwrap(), plan());
    }

    #[test]
    fn a_missing_short_or_invalid_key_is_a_config_error_naming_the_id_and_variable() {
        let mut s = CodecSettings {
            encrypt_with: "k1".into(),
            key_envs: BTreeMap::from([("k1".to_string(), "KEY_ONE".to_string())]),
            keys: BTreeMap::new(),
        };
        let load = |s: &mut CodecSettings, value: Option<&str>| {
            let env = value
                .map(|v| ("KEY_ONE".to_string(), v.to_string()))
                .into_iter()
                .collect();
            load_keys("/etc/chum.toml", s, &env).unwrap_err()
        };
        let err = load(&mut s, None);
        assert_eq!(err.key(), Some("temporal.codec.keys.k1"));
        assert!(err.to_string().contains("$KEY_ONE is not set"), "{err}");
        let err = load(&mut s, Some("AQID"));
        assert!(err.to_string().contains("holds 3 bytes, AES-256 needs 32"), "{err}");
        let err = load(&mut s, Some("not base64!"));
        assert!(err.to_string().contains("$KEY_ONE is not base64"), "{err}");
        assert!(
            !err.to_string().contains("not base64!"),
            "the value is never shown: {err}"
        );
    }
}

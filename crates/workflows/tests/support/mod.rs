//! What the replay and payload tests share: the codec a worker with the replay key has, which
//! decrypts the histories recorded with `[temporal.codec]` on and leaves those recorded in clear
//! as they are.

use std::collections::{BTreeMap, HashMap};

use chum_client::codec::{AesGcmCodec, load_keys};
use chum_core::config::CodecSettings;

/// The key histories recorded with `[temporal.codec]` on were encrypted with, under the key id
/// `replay` (crates/worker/tests/e2e/codec.rs records them with the same key): test key
/// material, not a secret.
const REPLAY_KEY: &str = "Y2h1bS1yZXBsYXktdGVzdC1rZXktMzItYnl0ZXMhISE=";

/// The codec with the replay key (`source` names the test in a loading error).
pub fn replay_codec(source: &str) -> AesGcmCodec {
    let mut settings = CodecSettings {
        encrypt_with: "replay".into(),
        key_envs: BTreeMap::from([("replay".to_string(), "CHUM_REPLAY_KEY".to_string())]),
        keys: BTreeMap::new(),
    };
    let env = HashMap::from([("CHUM_REPLAY_KEY".to_string(), REPLAY_KEY.to_string())]);
    load_keys(source, &mut settings, &env).expect("the replay key loads");
    AesGcmCodec::new(&settings).expect("the codec")
}

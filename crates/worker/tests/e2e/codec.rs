//! Encrypted payloads (`[temporal.codec]`), for real: the worker binary and a client loaded as
//! `chum` loads it encrypt every payload, so the history on the dev server holds ciphertext and no
//! plaintext of a secret the plan carries; the worker's codec endpoint (Temporal's codec-server
//! protocol) lets `temporal workflow show --codec-endpoint` show the plan to a `read` token; a
//! worker with the wrong key fails the workflow task naming the key id, and the run goes on once
//! the right key is back (nothing is lost).
//!
//! With `CHUM_RECORD_HISTORIES=1` the encrypted run is saved for the replay tests, which decrypt
//! it with [`REPLAY_KEY`] (the same key is in crates/workflows/tests/support/mod.rs).

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chum_core::config::RawCodec;
use chum_core::proto::{Outcome, Phase};
use chum_testkit::*;
use serde_json::json;
use temporalio_client::Client;

/// Written into the plan; never on the server in clear.
const SECRET: &str = "chum-codec-secret-7f3a";
/// Test key material, not a secret: the key the replay tests decrypt the recorded history with.
const REPLAY_KEY: &str = "Y2h1bS1yZXBsYXktdGVzdC1rZXktMzItYnl0ZXMhISE=";
/// Another key, under the same id: what a misconfigured worker has.
const WRONG_KEY: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
const KEY_VAR: &str = "CHUM_TEST_CODEC_KEY";
const READ_TOKEN: &str = "viewer-token-0123456789abcdef";

fn secret_plan() -> String {
    GOOD_PLAN.replace(
        "Add multiply(a, b) to calc with a unit test",
        &format!("Add multiply; codename {SECRET}"),
    )
}

/// The harness's configuration with `[temporal.codec]`: one key, `replay`.
fn with_codec(h: &Harness) -> std::path::PathBuf {
    let mut file = h.config_file.clone();
    file.temporal.codec = Some(RawCodec {
        kind: Some("aes-256-gcm".into()),
        encrypt_with: None,
        keys: [("replay".to_string(), KEY_VAR.to_string())].into(),
    });
    h.write_config(&file)
}

/// A client as `chum` makes it: the configuration loaded with `key` in the environment.
async fn encrypting_client(config: &std::path::Path, key: &str) -> Client {
    let env = HashMap::from([(KEY_VAR.to_string(), key.to_string())]);
    let config = chum_client::settings::load_config_with_env(config, &env).unwrap_or_else(|e| panic!("loads: {e}"));
    chum_client::connect::connect(&config.temporal, "codec-test", Duration::from_secs(20), |_, _, _| {})
        .await
        .unwrap_or_else(|e| panic!("connects: {e}"))
}

/// The worker binary with `key`, its API on `0.0.0.0:<api_port>` (beyond loopback: every read
/// needs a token) with one `read` token.
fn worker_with_key(config: &std::path::Path, key: &str, api_port: u16) -> WorkerProcess {
    let bind = format!("0.0.0.0:{api_port}");
    let tokens = format!("viewer:{READ_TOKEN}:read");
    WorkerProcess::start_with(
        config,
        &[(KEY_VAR, key), ("CHUM__API__BIND", &bind), ("CHUM_API_TOKENS", &tokens)],
    )
}

/// `temporal workflow show --output json` of `workflow_id`, with `extra` arguments.
fn show(address: &str, workflow_id: &str, extra: &[&str]) -> (bool, String) {
    let out = Command::new(temporal_binary())
        .args(["workflow", "show", "--output", "json", "--workflow-id", workflow_id])
        .args(["--address", address.trim_start_matches("http://")])
        .args(extra)
        .output()
        .expect("the temporal CLI runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every payload's data in `show`'s JSON, base64-decoded, one per line: what anyone reading the
/// history can read.
fn payload_texts(show: &str) -> String {
    fn walk(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(map) => {
                if let (Some(_), Some(serde_json::Value::String(data))) = (map.get("metadata"), map.get("data"))
                    && let Ok(bytes) = STANDARD.decode(data)
                {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                    out.push('\n');
                }
                map.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let json: serde_json::Value = serde_json::from_str(show).unwrap_or_else(|e| panic!("not JSON ({e}): {show}"));
    let mut out = String::new();
    walk(&json, &mut out);
    out
}

async fn wait_for_log(worker: &WorkerProcess, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(line) = worker.log().into_iter().find(|l| l.contains(needle)) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needle:?}: {:#?}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_holds_ciphertext_and_the_codec_endpoint_shows_the_plan_to_readers() {
    let h = &Harness::with_steps(
        "codec",
        vec![
            planner(&secret_plan()),
            calc_executor(GOOD_CALC),
            planner(&secret_plan()),
            calc_executor(GOOD_CALC),
        ],
    )
    .await;
    let path = with_codec(h);
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let worker = worker_with_key(&path, REPLAY_KEY, api_port);
    worker.wait_for_line("worker polling", 0).await;
    let check = worker.log().join("\n");
    assert!(
        check.contains("payload codec: aes-256-gcm on, encrypts with key replay"),
        "the worker says the codec is on: {check}"
    );
    assert!(!check.contains(REPLAY_KEY), "never the key: {check}");
    let client = encrypting_client(&path, REPLAY_KEY).await;

    // One bead, planned (the plan carries the secret), approved and integrated: every payload
    // went through the codec, both ways.
    let handle = start_shark(&client, &h.task_queue, h.input(limits())).await;
    let waiting = wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
    let plan = waiting.plan.as_ref().map(|p| p.summary.clone()).unwrap_or_default();
    assert!(plan.contains(SECRET), "the client reads the plan in clear: {waiting:?}");
    send_approve(&handle, json!({"approved": true, "by": "ops"})).await;
    let result = handle.get_result(Default::default()).await.expect("the run ends");
    assert_eq!(result.outcome(), Outcome::Integrated, "{result:?}");
    record_history(&handle, "codec_encrypted_integrated").await;

    // The history on the server: ciphertext in Temporal's encoding, no plaintext.
    let id = handle.info().workflow_id.clone();
    let (ok, raw) = show(&h.address, &id, &[]);
    assert!(ok, "{raw}");
    let stored = payload_texts(&raw);
    assert!(
        !raw.contains(SECRET) && !stored.contains(SECRET),
        "the secret is on the server in clear: {stored}"
    );
    assert!(
        !stored.contains("multiply"),
        "the bead and the plan are on the server in clear: {stored}"
    );
    let encrypted = STANDARD.encode("binary/encrypted");
    let key_id = STANDARD.encode("replay");
    assert!(
        raw.contains(&encrypted) && raw.contains(&key_id),
        "ciphertext metadata: {raw}"
    );

    // Through the worker's codec endpoint with a read token: the plan in clear.
    let codec = format!("{api}/codec");
    let (ok, decoded) = show(
        &h.address,
        &id,
        &[
            "--codec-endpoint",
            &codec,
            "--codec-auth",
            &format!("Bearer {READ_TOKEN}"),
        ],
    );
    assert!(ok, "{decoded}");
    assert!(
        payload_texts(&decoded).contains(SECRET),
        "the codec endpoint decodes the plan: {decoded}"
    );
    // Without a token the endpoint refuses (this API listens beyond loopback).
    let (ok, refused) = show(&h.address, &id, &["--codec-endpoint", &codec]);
    assert!(
        !ok || !payload_texts(&refused).contains(SECRET),
        "decoded without a token: {refused}"
    );

    // The protocol itself, as the Temporal UI speaks it from its origin.
    let http = http_client();
    let ui_origin = "http://127.0.0.1:8233";
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{codec}/decode"))
        .header("Origin", ui_origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,x-namespace",
        )
        .send()
        .await
        .expect("preflight answered");
    assert!(preflight.status().is_success(), "{preflight:?}");
    let allowed = |name: &str| {
        preflight
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(allowed("access-control-allow-origin"), ui_origin);
    assert!(allowed("access-control-allow-headers").contains("X-Namespace"));
    assert!(allowed("access-control-allow-headers").contains("Authorization"));
    let elsewhere = http
        .request(reqwest::Method::OPTIONS, format!("{codec}/decode"))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .expect("answered");
    assert!(
        elsewhere.headers().get("access-control-allow-origin").is_none(),
        "{elsewhere:?}"
    );

    let plain = json!({"payloads": [{"metadata": {"encoding": STANDARD.encode("json/plain")}, "data": STANDARD.encode(format!("\"{SECRET}\""))}]});
    let post = |route: &str, body: &serde_json::Value, token: Option<&str>| {
        let mut request = http
            .post(format!("{codec}/{route}"))
            .header("Origin", ui_origin)
            .header("X-Namespace", "default")
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let anonymous = post("decode", &plain, None).await.expect("answered");
    assert_eq!(anonymous.status(), 401);
    let sealed: serde_json::Value = post("encode", &plain, Some(READ_TOKEN))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sealed_text = sealed.to_string();
    assert!(
        !sealed_text.contains(&STANDARD.encode(format!("\"{SECRET}\""))),
        "{sealed_text}"
    );
    assert_eq!(sealed["payloads"][0]["metadata"]["encoding"], encrypted);
    let opened = post("decode", &sealed, Some(READ_TOKEN)).await.unwrap();
    assert_eq!(opened.headers().get("access-control-allow-origin").unwrap(), ui_origin);
    let opened: serde_json::Value = opened.json().await.unwrap();
    assert_eq!(opened, plain, "encode then decode gives the payload back");
    worker.stop();

    // A worker with another key under the id `replay`: the workflow task fails naming the key
    // id; Temporal keeps the task, and the run goes on once the right key is back.
    let wrong = worker_with_key(&path, WRONG_KEY, free_port());
    wrong.wait_for_line("worker polling", 0).await;
    let mut input = h.input(limits());
    input.bead_id = "tk-3".into();
    let handle = start_shark(&client, &h.task_queue, input).await;
    let id = handle.info().workflow_id.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    let failure = loop {
        let (_, raw) = show(&h.address, &id, &[]);
        if raw.contains("Failed decoding activation") {
            break raw;
        }
        assert!(Instant::now() < deadline, "no failed workflow task: {raw}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        failure.contains(r#"key id \"replay\""#) && failure.contains(KEY_VAR),
        "the failure names the key id and its variable: {failure}"
    );
    wait_for_log(&wrong, r#"key id \"replay\""#).await;
    wrong.stop();
    let worker = worker_with_key(&path, REPLAY_KEY, free_port());
    let waiting = wait_for_phase(&handle, Phase::AwaitingApproval, 1).await;
    assert_eq!(
        waiting.phase(),
        Phase::AwaitingApproval,
        "nothing was lost: {waiting:?}"
    );
    worker.stop();
}

#[test]
fn a_key_that_is_not_set_or_not_32_bytes_stops_the_worker_naming_the_key_id_and_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chum.toml");
    let mut file = small_config(&["true"], &["planner", "executor"]);
    file.project().dod = vec!["true".into()];
    file.project().gates = Some(vec!["dod".into()]);
    file.temporal.codec = Some(RawCodec {
        kind: Some("aes-256-gcm".into()),
        encrypt_with: Some("k2".into()),
        keys: [
            ("k1".to_string(), "CHUM_TEST_K1".to_string()),
            ("k2".to_string(), "CHUM_TEST_K2".to_string()),
        ]
        .into(),
    });
    std::fs::write(&path, toml::to_string(&file).unwrap()).unwrap();
    let check = |env: &[(&str, &str)]| {
        let out = Command::new(worker_binary())
            .arg("--config")
            .arg(&path)
            .arg("--check")
            .env_remove("CHUM_API_TOKENS")
            .envs(env.iter().copied())
            .output()
            .expect("worker runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("panicked"), "{text}");
        (out.status.success(), text)
    };
    let (ok, text) = check(&[("CHUM_TEST_K2", REPLAY_KEY)]);
    assert!(!ok);
    assert!(
        text.contains("temporal.codec.keys.k1") && text.contains("$CHUM_TEST_K1 is not set"),
        "{text}"
    );
    let (ok, text) = check(&[("CHUM_TEST_K1", "c2hvcnQ="), ("CHUM_TEST_K2", REPLAY_KEY)]);
    assert!(!ok);
    assert!(text.contains("holds 5 bytes, AES-256 needs 32"), "{text}");
    assert!(!text.contains("c2hvcnQ="), "never the key: {text}");
    let (ok, text) = check(&[("CHUM_TEST_K1", WRONG_KEY), ("CHUM_TEST_K2", REPLAY_KEY)]);
    assert!(ok, "{text}");
    assert!(
        text.contains("payload codec: aes-256-gcm on, encrypts with key k2, decrypts with keys k1, k2"),
        "{text}"
    );
    assert!(
        !text.contains(REPLAY_KEY) && !text.contains(WRONG_KEY),
        "never a key: {text}"
    );
}

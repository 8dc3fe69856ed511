//! The `worker` binary's behaviour at start: bad configuration and an unreachable server give a
//! clear error naming what is wrong and what to do, and a non-zero exit, never a panic.

use std::process::Command;

fn worker(config: &std::path::Path, env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .expect("worker runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "{text}");
    (out.status.code().unwrap_or(-1), text)
}

/// `worker --config <config> --check` with `env` (and no API tokens of the caller's): whether it
/// passed, and what it printed on stderr.
fn check(config: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let (ok, _, stderr) = check_output(config, env);
    (ok, stderr)
}

/// [`check`], with its stdout too.
fn check_output(config: &std::path::Path, env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("--config")
        .arg(config)
        .arg("--check")
        .env_remove("CHUM_API_TOKENS")
        .envs(env.iter().copied())
        .output()
        .expect("worker runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const VALID: &str = r#"
[temporal]
address = "http://127.0.0.1:1"
connect_timeout = "1s"
[projects.demo]
repo = "."
gates = ["dod"]
[providers.scripted]
command = ["chum-scripted-agent"]
output = "claude-json"
[tiers]
fast = ["scripted"]
[roles]
planner = "fast"
executor = "fast"
"#;

#[test]
fn a_missing_config_file_says_how_to_make_one() {
    let (code, text) = worker(std::path::Path::new("/nonexistent/chum.toml"), &[]);
    assert_ne!(code, 0);
    assert!(
        text.contains("/nonexistent/chum.toml not found") && text.contains("chum.example.toml"),
        "{text}"
    );
}

#[test]
fn a_bad_key_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chum.toml");
    std::fs::write(&path, VALID.replace("[roles]", "[roles]\nreveiwer = \"fast\"")).unwrap();
    let (code, text) = worker(&path, &[]);
    assert_ne!(code, 0);
    assert!(
        text.contains(&path.display().to_string()) && text.contains("roles.reveiwer"),
        "{text}"
    );
}

#[test]
fn check_validates_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chum.toml");
    std::fs::write(&path, VALID).unwrap();
    let (ok, stdout, stderr) = check_output(&path, &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ok (1 project(s)"));
}

#[test]
fn a_bd_dolt_store_under_the_native_backend_is_refused_at_start_with_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".beads")).unwrap();
    // What bd 0.50+ writes: a Dolt database, no issues.jsonl.
    std::fs::write(
        dir.path().join(".beads/metadata.json"),
        r#"{"database": "dolt", "backend": "dolt"}"#,
    )
    .unwrap();
    let path = dir.path().join("chum.toml");
    let check_with = |config: &str| {
        std::fs::write(&path, config).unwrap();
        check(&path, &[])
    };
    let (ok, text) = check_with(VALID);
    assert!(!ok);
    assert!(
        text.contains("project demo")
            && text.contains("Dolt database")
            && text.contains("beads_backend = \"cli\" and beads_cli = \"bd\""),
        "{text}"
    );
    let (ok, text) = check_with(&VALID.replace(
        "repo = \".\"",
        "repo = \".\"\nbeads_backend = \"cli\"\nbeads_cli = \"bd\"",
    ));
    assert!(ok, "{text}");
}

#[test]
fn an_unreachable_server_names_the_address_and_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chum.toml");
    std::fs::write(&path, VALID).unwrap();
    let (code, text) = worker(&path, &[("CHUM__TEMPORAL__ADDRESS", "http://127.0.0.1:9")]);
    assert_ne!(code, 0);
    assert!(
        text.contains("http://127.0.0.1:9") && text.contains("make up"),
        "{text}"
    );
}

#[test]
fn an_api_reachable_from_the_network_needs_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chum.toml");
    std::fs::write(&path, VALID).unwrap();
    let (ok, text) = check(&path, &[("CHUM__API__BIND", "0.0.0.0:8900")]);
    assert!(!ok);
    assert!(
        text.contains("0.0.0.0:8900") && text.contains("no API tokens") && text.contains("CHUM_API_TOKENS"),
        "{text}"
    );
    let (ok, text) = check(
        &path,
        &[("CHUM__API__BIND", "0.0.0.0:8900"), ("CHUM_API_TOKENS", "ops:short")],
    );
    assert!(!ok);
    assert!(
        text.contains("CHUM_API_TOKENS") && text.contains("at least 16"),
        "{text}"
    );
    let (ok, text) = check(
        &path,
        &[
            ("CHUM__API__BIND", "0.0.0.0:8900"),
            ("CHUM_API_TOKENS", "ops:0123456789abcdef0123"),
        ],
    );
    assert!(ok, "{text}");
    let (ok, text) = check(&path, &[("CHUM__API__BIND", "localhost")]);
    assert!(!ok);
    assert!(text.contains("api.bind"), "{text}");
}

#[test]
fn a_shared_store_is_shown_without_its_password_and_one_out_of_reach_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chum.toml");
    let store = "[store]\nurl = \"postgres://chum:hunter2-secret@127.0.0.1:1/chum\"\n";
    std::fs::write(&path, format!("{VALID}{store}")).unwrap();

    let (ok, stdout, stderr) = check_output(&path, &[]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l == "store: postgres://chum:***@127.0.0.1:1/chum"),
        "{stdout}"
    );
    assert!(!format!("{stdout}{stderr}").contains("hunter2"), "{stdout}{stderr}");

    // Nothing answers there: the worker stops before it polls, saying which store and which key.
    let (code, text) = worker(&path, &[]);
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("postgres://chum:***@127.0.0.1:1/chum") && text.contains("store.url"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

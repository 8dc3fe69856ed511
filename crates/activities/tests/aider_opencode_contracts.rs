//! Contract tests with the real Aider (PyPI `aider-chat`, in `.tools/aider-venv`) and OpenCode
//! (npm `opencode-ai`, in `.tools/opencode`), installed by scripts/setup.sh, run by CHUM's own
//! activities against the scripted model server's OpenAI Chat Completions API. OpenCode edits the
//! worktree with its own `read`/`edit`/`write` tools; Aider applies the SEARCH/REPLACE blocks of
//! the model's reply itself. Both run offline: every connection they make goes to the model server
//! through CHUM's egress proxy, and none is refused. The usage CHUM records is what the model
//! server reported, read from each CLI's own report.
//!
//! Without a CLI installed its tests say so and pass, unless CHUM_REQUIRE_AGENT_CLIS=1 (CI sets
//! it), when a missing CLI is a failure.

mod agent_clis;

use std::collections::BTreeMap;
use std::path::Path;

use agent_clis::*;
use chum_core::config::RawProvider;
use chum_core::proto::AgentUsage;
use chum_testkit::bwrap;

/// Aider against the model server at `addr` as an OpenAI-compatible API (litellm's `openai/`
/// models), in a scratch HOME: it edits in its `diff` format, leaves git to CHUM (`--no-git`: no
/// commits, no repository map cache in the worktree), asks the API for exact usage
/// (`--no-stream`; streamed, it counts tokens itself) and finds the models' metadata in a file
/// (else it fetches litellm's price list from the network). CHUM puts its histories and analytics
/// log in the run's scratch directory.
fn aider_providers(dir: &Path, aider: &Path, addr: &str, marker: &str) -> BTreeMap<String, RawProvider> {
    let home = dir.join("aider-home");
    std::fs::create_dir_all(&home).unwrap();
    let metadata = dir.join("aider-models.json");
    let model = serde_json::json!({"max_input_tokens": 200000, "max_output_tokens": 32000,
        "input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "litellm_provider": "openai", "mode": "chat"});
    let models = serde_json::json!({"openai/scripted-main": model, "openai/scripted-other": model});
    std::fs::write(&metadata, models.to_string()).unwrap();
    let env = env_of(&[
        ("OPENAI_API_BASE", format!("http://{addr}/v1")),
        ("OPENAI_API_KEY", "dummy".into()),
        ("LITELLM_LOCAL_MODEL_COST_MAP", "True".into()),
        ("HOME", home.display().to_string()),
        (MARKER, marker.into()),
    ]);
    let command = [
        &aider.display().to_string(),
        "--model",
        "openai/{model}",
        "--message-file",
        "{prompt_file}",
        "--yes-always",
        "--no-git",
        "--edit-format",
        "diff",
        "--no-pretty",
        "--no-stream",
        "--analytics-disable",
        "--no-check-update",
        "--no-show-release-notes",
        "--model-metadata-file",
        &metadata.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    // The sandbox shows a venv script its venv and the Python it was made from (pyenv's, under
    // the hidden home, here): `exec::sandbox::program_paths`.
    two_providers(command, "aider", env, &home, addr)
}

/// OpenCode with the model server at `addr` as an OpenAI-compatible provider `local`, edits and
/// commands allowed without asking, nothing fetched (models list, plugins, LSP servers, updates).
/// Its configuration sits in a directory it may read and not write (`XDG_CONFIG_HOME`, shown
/// read-only in the sandbox): OpenCode installs npm packages from the registry into a
/// configuration directory it can write, and writes a `.gitignore` there first unless one is
/// there. The key goes by name (`{env:LOCAL_KEY}`), its value only in the agent's environment.
fn opencode_providers(dir: &Path, opencode: &Path, addr: &str, marker: &str) -> BTreeMap<String, RawProvider> {
    let home = dir.join("opencode-home");
    std::fs::create_dir_all(&home).unwrap();
    let config_home = dir.join("opencode-config");
    std::fs::create_dir_all(config_home.join("opencode")).unwrap();
    let config = serde_json::json!({
        "autoupdate": false,
        "share": "disabled",
        "provider": {"local": {
            "npm": "@ai-sdk/openai-compatible",
            "name": "local",
            "options": {"baseURL": format!("http://{addr}/v1"), "apiKey": "{env:LOCAL_KEY}"},
            "models": {"scripted-main": {"name": "scripted-main"}, "scripted-other": {"name": "scripted-other"}}
        }},
        "permission": {"edit": "allow", "bash": "allow", "webfetch": "deny"}
    });
    std::fs::write(config_home.join("opencode/opencode.json"), config.to_string()).unwrap();
    std::fs::write(
        config_home.join("opencode/.gitignore"),
        "node_modules\npackage.json\npackage-lock.json\nbun.lock\n.gitignore\n",
    )
    .unwrap();
    let env = env_of(&[
        ("LOCAL_KEY", "dummy".into()),
        ("XDG_CONFIG_HOME", config_home.display().to_string()),
        ("OPENCODE_DISABLE_AUTOUPDATE", "1".into()),
        ("OPENCODE_DISABLE_MODELS_FETCH", "1".into()),
        ("OPENCODE_DISABLE_DEFAULT_PLUGINS", "1".into()),
        ("OPENCODE_DISABLE_LSP_DOWNLOAD", "1".into()),
        ("OPENCODE_DISABLE_SHARE", "1".into()),
        ("OPENCODE_DISABLE_CLAUDE_CODE", "1".into()),
        ("HOME", home.display().to_string()),
        (MARKER, marker.into()),
    ]);
    let command = [
        &opencode.display().to_string(),
        "run",
        "--format",
        "json",
        "--pure",
        "--title",
        "chum",
        "-m",
        "local/{model}",
    ]
    .map(String::from)
    .to_vec();
    let mut providers = two_providers(command, "opencode-jsonl", env, &home, addr);
    for provider in providers.values_mut() {
        provider.readable.push(config_home.display().to_string());
    }
    providers
}

/// The usage CHUM recorded is the model server's (`per_request` tokens in and out), summed over
/// the CLI's requests, not an estimate of the CLI's own; `requests` is how many it made at least.
fn assert_server_usage(usage: &AgentUsage, per_request: (u64, u64), requests: u64) {
    let made = usage.input_tokens / per_request.0;
    assert!(
        made >= requests && usage.input_tokens == made * per_request.0 && usage.output_tokens == made * per_request.1,
        "{usage:?}"
    );
}

/// Nothing but the model server was asked for: the egress proxy refused no connection.
fn assert_offline(config: &chum_core::config::ChumConfig) {
    if bwrap().is_none() {
        return;
    }
    let log = std::fs::read_dir(config.state_dir.join("artifacts"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|e| walk(&e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".egress.log"))
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect::<String>();
    assert!(log.contains("allowed "), "no egress log: {log}");
    assert!(!log.contains("refused"), "the CLI tried other hosts: {log}");
}

fn walk(path: &Path) -> Vec<std::path::PathBuf> {
    if path.is_dir() {
        std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|e| walk(&e.path()))
            .collect()
    } else {
        vec![path.to_path_buf()]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aider_executes_and_reviews_through_chum() {
    let Some(aider) = installed_cli(".tools/aider-venv/bin/aider") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Figures aider's own report rounds (`1.2k sent`): only its analytics log has them exactly.
    let mut scenario = scenario();
    scenario.usage.input_tokens = 1234;
    scenario.usage.output_tokens = 151;
    let server = model_server(dir.path(), &scenario, "aider");
    let config = setup(
        dir.path(),
        aider_providers(dir.path(), &aider, &server.addr, "aider-execute"),
    );
    let usage = execute_and_review(config.clone()).await;
    // One request (aider applies the blocks to files it was not given, after its own yes), its
    // exact tokens from the analytics log. The metadata prices the models at nothing and the
    // price table does not know them: the cost is zero.
    assert_server_usage(&usage, (1234, 151), 1);
    assert_eq!(usage.cost_usd, 0.0, "{usage:?}");
    let history = config
        .state_dir
        .join("artifacts/shark-demo-tk-1/r1/execute-1-0.sandbox/aider.chat.history.md");
    let history = std::fs::read_to_string(&history).unwrap_or_default();
    assert!(
        history.contains("Added multiply()"),
        "aider's chat history is kept with the run's artifacts, not in the worktree: {history}"
    );
    assert_offline(&config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencode_executes_and_reviews_through_chum() {
    let Some(opencode) = installed_cli(".tools/opencode/node_modules/.bin/opencode") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = model_server(dir.path(), &scenario(), "opencode");
    // OpenCode reports tokens and a cost of zero for a model it has no price for: the provider's
    // price makes them count against USD budgets, marked computed.
    let providers = priced(
        opencode_providers(dir.path(), &opencode, &server.addr, "opencode-execute"),
        1.25,
        10.0,
    );
    let config = setup(dir.path(), providers);
    let usage = execute_and_review(config.clone()).await;
    // read, edit, read, write, then the answer: five requests.
    assert_server_usage(&usage, (1200, 150), 5);
    let computed = (usage.input_tokens as f64 * 1.25 + usage.output_tokens as f64 * 10.0) / 1e6;
    assert!((usage.cost_usd - computed).abs() < 1e-12, "{usage:?}");
    let store = chum_activities::store::Store::open(&config.state_dir.join("chum.db")).unwrap();
    let spent = store.spent(chum_activities::store::UsageFilter::default()).unwrap();
    assert!(spent.computed >= 2, "executor and reviewer computed: {spent:?}");
    assert_offline(&config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_aider_is_killed_with_its_process_group() {
    let Some(aider) = installed_cli(".tools/aider-venv/bin/aider") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = model_server(dir.path(), &hang(), "aider");
    let providers = aider_providers(dir.path(), &aider, &server.addr, "aider-hang");
    assert_killed(setup(dir.path(), providers), "aider-hang").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_opencode_is_killed_with_its_process_group() {
    let Some(opencode) = installed_cli(".tools/opencode/node_modules/.bin/opencode") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = model_server(dir.path(), &hang(), "opencode");
    let providers = opencode_providers(dir.path(), &opencode, &server.addr, "opencode-hang");
    assert_killed(setup(dir.path(), providers), "opencode-hang").await;
}

//! What an aider run needs beyond its command: aider writes its chat and input histories into the
//! directory it runs in (the worktree, where they would be committed) unless told otherwise, and
//! reports exact usage only in its analytics log. CHUM points all three into the run's scratch
//! directory (kept with the run's artifacts), unless the provider's `env` names them, and reads
//! the usage back.

use std::path::{Path, PathBuf};

use chum_core::agent_output::aider_analytics_usage;
use chum_core::proto::AgentUsage;

use crate::exec::ChildEnv;

/// Aider's files, as the variables aider reads its options from, and where they go by default.
const FILES: [(&str, &str); 3] = [
    ("AIDER_CHAT_HISTORY_FILE", "aider.chat.history.md"),
    ("AIDER_INPUT_HISTORY_FILE", "aider.input.history"),
    ("AIDER_ANALYTICS_LOG", "aider-analytics.jsonl"),
];

/// Sets aider's files in the agent's environment (those the provider did not set) and returns
/// where its analytics log will be.
pub(super) fn files(env: &mut ChildEnv, scratch: &Path) -> PathBuf {
    for (name, file) in FILES {
        if env.get(name).is_none() {
            env.set(name, scratch.join(file).display().to_string());
        }
    }
    PathBuf::from(env.get("AIDER_ANALYTICS_LOG").unwrap_or_default())
}

/// Replaces the usage read from aider's stdout (rounded: `1.2k`) with its analytics log's exact
/// figures, when the log records any request.
pub(super) async fn exact_usage(usage: &mut AgentUsage, log: &Path) {
    if let Some(exact) = tokio::fs::read_to_string(log)
        .await
        .ok()
        .as_deref()
        .and_then(aider_analytics_usage)
    {
        *usage = exact;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histories_and_the_log_go_to_the_scratch_directory_unless_the_provider_names_them() {
        let mut env = ChildEnv::default();
        env.set("AIDER_INPUT_HISTORY_FILE", "/dev/null");
        let log = files(&mut env, Path::new("/s"));
        assert_eq!(log, PathBuf::from("/s/aider-analytics.jsonl"));
        assert_eq!(env.get("AIDER_CHAT_HISTORY_FILE"), Some("/s/aider.chat.history.md"));
        assert_eq!(env.get("AIDER_INPUT_HISTORY_FILE"), Some("/dev/null"));
    }

    #[tokio::test]
    async fn the_logs_exact_usage_replaces_the_rounded_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.jsonl");
        let mut usage = AgentUsage {
            input_tokens: 1200,
            output_tokens: 150,
            cost_usd: 0.0,
        };
        exact_usage(&mut usage, &log).await;
        assert_eq!(usage.input_tokens, 1200, "no log: the stdout's figures stay");
        std::fs::write(
            &log,
            r#"{"event": "message_send", "properties": {"prompt_tokens": 1234, "completion_tokens": 151, "total_cost": 0.5}}"#,
        )
        .unwrap();
        exact_usage(&mut usage, &log).await;
        assert_eq!((usage.input_tokens, usage.output_tokens), (1234, 151));
        assert!((usage.cost_usd - 0.5).abs() < 1e-12);
    }
}

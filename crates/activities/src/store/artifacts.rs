//! The artifact store: full prompts, agent output, diffs and DoD logs, on disk under
//! `<state_dir>/artifacts/<workflow id>/<run id>/`. Payloads carry these paths, never the content.

use std::path::{Path, PathBuf};

use chum_core::proto::RunRef;
use tracing::Instrument as _;

/// The artifact directory of one run.
#[derive(Debug, Clone)]
pub struct RunArtifacts {
    dir: PathBuf,
}

fn safe(component: &str) -> String {
    component
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl RunArtifacts {
    pub fn new(state_dir: &Path, run: &RunRef) -> RunArtifacts {
        let workflow = if run.workflow_id.is_empty() {
            "no-workflow".to_string()
        } else {
            safe(&run.workflow_id)
        };
        let run_id = if run.run_id.is_empty() {
            "no-run".to_string()
        } else {
            safe(&run.run_id)
        };
        RunArtifacts {
            dir: state_dir.join("artifacts").join(workflow).join(run_id),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of an artifact, e.g. `execute-2.stdout.log`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(safe(name))
    }

    pub async fn write(&self, name: &str, content: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.path(name);
        async {
            tokio::fs::create_dir_all(&self.dir).await?;
            tokio::fs::write(&path, content).await
        }
        .instrument(crate::log_context::component("artifact write"))
        .await?;
        Ok(path)
    }
}

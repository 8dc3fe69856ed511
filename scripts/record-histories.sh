#!/usr/bin/env bash
# Re-records the workflow histories the replay tests read (crates/workflows/tests/histories/current/).
# Run it on purpose after a deliberate change to a workflow's command sequence (behind a patch
# marker), then commit the new histories together with the change. Each end-to-end path test saves
# its run's history. Before re-recording, copy the histories the change affects into
# legacy/before-<marker>/: they prove runs started before the upgrade go on after it. Nothing under
# legacy/ is ever deleted or re-recorded.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh >/dev/null
rm -f crates/workflows/tests/histories/current/*.json
CHUM_RECORD_HISTORIES=1 cargo test -p worker --test e2e --no-fail-fast -- --test-threads 2
ls -1 crates/workflows/tests/histories/current/

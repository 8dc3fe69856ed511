#!/usr/bin/env bash
# `make demo`: one bead of a real project through the Shark, offline, with the scripted agent.
# Starts a Temporal dev server (persistent, UI on :8233) and the worker, creates the demo project,
# submits bead tk-1a, approves its plan through the signal (`chum approve`) as a person would,
# and follows the run live to its merged commit. Everything it starts is stopped on exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$CHUM_ROOT"

# Overridable so the test suite can run the demo beside a developer's own (see the Makefile).
STATE="${CHUM_DEMO_STATE:-.chum/demo}"
PORT="${CHUM_DEMO_PORT:-7233}"
UI_PORT="${CHUM_DEMO_UI_PORT:-8233}"
CONFIG="configs/demo/chum.toml"
BEAD="tk-1a"
SECOND_BEAD="tk-2b"
WORKER_PID=""
export CHUM__TEMPORAL__ADDRESS="http://127.0.0.1:$PORT"
export CHUM__TEMPORAL__UI_URL="http://127.0.0.1:$UI_PORT"
export CHUM__STATE_DIR="$CHUM_ROOT/$STATE/state"
export CHUM__PROJECTS__DEMO__REPO="$CHUM_ROOT/$STATE/project"

cleanup() {
    stop_pid "$WORKER_PID" "worker"
    stop_pid "$STARTED_SERVER_PID" "Temporal dev server"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash scripts/setup.sh
say "building CHUM (the first build takes a few minutes)"
cargo build --workspace --bins
CHUM="$CHUM_ROOT/target/debug/chum --config $CONFIG"

mkdir -p "$STATE"
start_dev_server "$STATE" "$PORT" "$UI_PORT"

# Runs left over from an interrupted demo would hold the workflow ids.
for bead in "$BEAD" "$SECOND_BEAD"; do
    temporal workflow terminate --address "127.0.0.1:$PORT" --workflow-id "shark-demo-$bead" \
        --reason "demo restarted" >/dev/null 2>&1 || true
done

say "creating the demo project (a Python package with tests and 3 beads) in $STATE/project"
$CHUM demo init "$STATE/project" --force
# A fresh lesson store too, so the demo learns its lesson anew.
rm -f "$STATE/state/chum.db" "$STATE/state/chum.db-wal" "$STATE/state/chum.db-shm"

say "starting the worker (log: $STATE/worker.log)"
"$CHUM_ROOT/target/debug/worker" --config "$CONFIG" >"$STATE/worker.log" 2>&1 &
WORKER_PID=$!
echo "$WORKER_PID" >"$STATE/worker.pid"

say "submitting bead $BEAD: $(grep -o '"title":"[^"]*"' "$STATE/project/.beads/issues.jsonl" | head -n1 | cut -d'"' -f4)"
$CHUM submit "$BEAD"

say "planning; the run stops at the human gate"
$CHUM watch "$BEAD" --until awaiting_approval --timeout 5m

say "a person reviews the plan and approves it through the signal:"
echo "    \$ chum approve $BEAD --by demo-operator --feedback \"criteria are right, go\""
$CHUM approve "$BEAD" --by demo-operator --feedback "criteria are right, go"

say "executing in a git worktree; review, Semgrep and the definition of done; integrating"
$CHUM watch "$BEAD" --timeout 10m || { echo "the run did not integrate; worker log: $STATE/worker.log" >&2; exit 1; }

say "the ContinuousLearner (a child of the run that outlives it) turns the review's finding into a lesson and a rule"
$CHUM learned "$BEAD" --timeout 5m
echo "    the rule, as committed to the project:"
sed 's/^/      /' "$STATE/project/.semgrep/chum-1.yaml"

say "bead $SECOND_BEAD: $(grep -o '"title":"[^"]*"' "$STATE/project/.beads/issues.jsonl" | sed -n 2p | cut -d'"' -f4)"
$CHUM submit "$SECOND_BEAD" >/dev/null
$CHUM watch "$SECOND_BEAD" --until awaiting_approval --timeout 5m >/dev/null
$CHUM approve "$SECOND_BEAD" --by demo-operator --feedback "go"
say "the same mistake again: the learned rule stops it in Semgrep, before the tests run"
if $CHUM watch "$SECOND_BEAD" --timeout 10m; then
    say "done: both beads merged; the second one's mistake cost a Semgrep scan, not a test run"
    git -C "$STATE/project" log --oneline -n 5 main
    echo
    if [[ "${CHUM_DEMO_KEEP:-0}" == "1" ]]; then
        say "keeping the server and worker up: Temporal UI http://127.0.0.1:$UI_PORT; try \`target/debug/chum --config $CONFIG lessons search split\`. Ctrl-C stops."
        wait "$WORKER_PID" || true
    else
        echo "The dev server and worker stop now. Run \`CHUM_DEMO_KEEP=1 make demo\` to keep them (and"
        echo "the Temporal UI on http://127.0.0.1:$UI_PORT) up afterwards."
    fi
else
    echo "the run did not integrate; worker log: $STATE/worker.log" >&2
    exit 1
fi

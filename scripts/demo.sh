#!/usr/bin/env bash
# `make demo`: three dependent beads of a real project through the factory, offline, with the
# scripted agent. Starts a Temporal dev server (persistent, UI on :8233) and the worker, creates the
# demo project, adds three beads with `chum create` (tk-2b waits for tk-1a, tk-3c for tk-2b) and
# lets the dispatcher start their Sharks in dependency order: nobody starts a run by hand. Each
# plan is approved with `chum approve` (the `approve` update) as a person would; each run is followed live
# to its merged commit. The learner turns a review finding into a Semgrep rule that stops the same
# mistake in the next bead; the groomer tends the backlog after every bead, and the strategic groom
# commits a briefing. Everything it starts is stopped on exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$CHUM_ROOT"

# Overridable so the test suite can run the demo beside a developer's own (see the Makefile).
STATE="${CHUM_DEMO_STATE:-.chum/demo}"
PORT="${CHUM_DEMO_PORT:-7233}"
UI_PORT="${CHUM_DEMO_UI_PORT:-8233}"
API_PORT="${CHUM_DEMO_API_PORT:-8900}"
CONFIG="configs/demo/chum.toml"
WORKER_PID=""
export CHUM__TEMPORAL__ADDRESS="http://127.0.0.1:$PORT"
export CHUM__TEMPORAL__UI_URL="http://127.0.0.1:$UI_PORT"
export CHUM__STATE_DIR="$CHUM_ROOT/$STATE/state"
export CHUM__PROJECTS__DEMO__REPO="$CHUM_ROOT/$STATE/project"
export CHUM__API__BIND="127.0.0.1:$API_PORT"

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

# Runs left over from an earlier demo would hold the workflow ids (and its dispatcher the old
# settings): remove them, so this demo starts from a clean slate.
DEMO_IDS=(dispatcher-demo shark-demo-tk-1a shark-demo-tk-2b shark-demo-tk-3c)
for id in "${DEMO_IDS[@]}"; do
    # Every run of the id (deletion is asynchronous; an older run shows up once the newest is gone).
    for _ in $(seq 1 40); do
        temporal workflow describe --address "127.0.0.1:$PORT" --workflow-id "$id" >/dev/null 2>&1 || break
        temporal workflow delete --yes --address "127.0.0.1:$PORT" --workflow-id "$id" >/dev/null 2>&1 || true
        sleep 0.25
    done
done

say "creating the demo project (a Python package with tests, a Semgrep rule, an empty backlog) in $STATE/project"
$CHUM demo init "$STATE/project" --force
# A fresh lesson store too, so the demo learns its lesson anew.
rm -f "$STATE/state/chum.db" "$STATE/state/chum.db-wal" "$STATE/state/chum.db-shm"

say "chum doctor: what this machine gives CHUM (Temporal, tools, providers, the agent sandbox)"
$CHUM doctor | sed 's/^/    /' || { echo "chum doctor found a problem (above)" >&2; exit 1; }

# A token for the web console, made for this demo and kept in a file only its owner reads (never
# printed, never in the log): log in with it to approve from the browser.
TOKEN_FILE="$STATE/console-token"
(umask 077 && python3 -c 'import secrets; print(secrets.token_hex(24))' >"$TOKEN_FILE")
CHUM_API_TOKENS="demo-operator:$(cat "$TOKEN_FILE"):control"
export CHUM_API_TOKENS

say "starting the worker (log: $STATE/worker.log); it starts the project's dispatcher"
"$CHUM_ROOT/target/debug/worker" --config "$CONFIG" >"$STATE/worker.log" 2>&1 &
WORKER_PID=$!
echo "$WORKER_PID" >"$STATE/worker.pid"
# The CLI below talks to Temporal; it needs no API token.
unset CHUM_API_TOKENS
echo "    the web console: http://127.0.0.1:$API_PORT/ (open it to watch; log in with the token in $TOKEN_FILE to decide)"

say "three beads go into the backlog, as a person would add them (\`bd create\` works the same):"
echo "    \$ chum create \"Add slugify() to textkit\" --id tk-1a ..."
$CHUM create "Add slugify() to textkit" --id tk-1a --priority 1 --type feature \
    -d "Blog titles need URL slugs. Add textkit.slug.slugify(title) -> str: lower-case, words joined by single dashes, punctuation dropped, no leading or trailing dash. Cover it with unit tests." \
    --acceptance 'slugify("Hello, World!") == "hello-world"; repeated separators collapse to one dash'
echo "    \$ chum create \"Add truncate_words() to textkit\" --id tk-2b --depends-on tk-1a ..."
$CHUM create "Add truncate_words() to textkit" --id tk-2b --depends-on tk-1a --priority 2 --type feature \
    -d "textkit.truncate_words(text, count) keeps the first count words of text and ends with '…' when it cut something. Words are separated by any whitespace." \
    --acceptance 'truncate_words("a  b c", 2) == "a b…"; text with at most count words comes back unchanged' >/dev/null
echo "    \$ chum create \"Document textkit's functions in the README\" --id tk-3c --depends-on tk-2b ..."
$CHUM create "Document textkit's functions in the README" --id tk-3c --depends-on tk-2b --priority 3 --type chore \
    -d "Describe every public function in README.md with one example each." >/dev/null
$CHUM backlog | sed 's/^/    /'

# approve_when_planned <bead> <feedback>: wait for the dispatcher to start the bead's Shark and
# for its plan at the gate, then approve it through the signal.
approve_when_planned() {
    local bead="$1" feedback="$2"
    $CHUM watch "$bead" --until awaiting_approval --timeout 5m
    echo "    \$ chum approve $bead --by demo-operator --feedback \"$feedback\""
    $CHUM approve "$bead" --by demo-operator --feedback "$feedback"
}

say "the dispatcher starts tk-1a's Shark (the only ready bead); planning stops at the human gate"
approve_when_planned tk-1a "criteria are right, go"

say "executing in a git worktree; Semgrep, the review and the definition of done; integrating"
$CHUM watch tk-1a --timeout 10m || { echo "the run did not integrate; worker log: $STATE/worker.log" >&2; exit 1; }

echo "    where the agents and DoD commands ran (the sandbox), from the worker log:"
# One awk over the whole log: a `grep -m1` at the end of a pipe stops reading early, the grep
# before it dies of SIGPIPE and `pipefail` turns that into a failed demo (it did, once, in CI).
for kind in 'role=executor' 'role=reviewer' 'DoD command starting'; do
    awk -v kind="$kind" '!done && /(agent|DoD command) starting/ && /bead=tk-1a/ && index($0, kind) {
        match($0, /(agent|DoD command) starting/); print "      " substr($0, RSTART, 164); done = 1 }' "$STATE/worker.log"
done

say "the ContinuousLearner (a child of the run that outlives it) turns the review's finding into a lesson and a rule"
$CHUM learned tk-1a --timeout 5m
echo "    the rule, as committed to the project:"
sed 's/^/      /' "$STATE/project/.semgrep/chum-1.yaml"

say "tk-1a is closed, so tk-2b is ready: the dispatcher starts it"
approve_when_planned tk-2b "go"
say "the same mistake again: the learned rule stops it in Semgrep, before the tests run"
$CHUM watch tk-2b --timeout 10m || { echo "the run did not integrate; worker log: $STATE/worker.log" >&2; exit 1; }

say "tk-2b is closed, so tk-3c is ready: the dispatcher starts it"
approve_when_planned tk-3c "go"
say "pausing the dispatcher, so the follow-up bead the groomer filed waits for a person:"
echo "    \$ chum pause demo"
$CHUM pause demo
$CHUM watch tk-3c --timeout 10m || { echo "the run did not integrate; worker log: $STATE/worker.log" >&2; exit 1; }

say "the groomer after each bead (a child of each run): what it changed, and what validation refused"
for _ in $(seq 1 60); do
    # grep without -q reads all of chum's output: an early exit would SIGPIPE chum under pipefail
    $CHUM groom log | grep "Transliterate" >/dev/null && break
    sleep 0.5
done
$CHUM groom log | sed 's/^/    /'

say "the strategic groom (daily on its Temporal Schedule; run now): repo map + backlog + lessons"
$CHUM groom now --timeout 5m | sed 's/^/    /'
echo "    .beads/briefing.md, as committed:"
git -C "$STATE/project" show main:.beads/briefing.md | sed -n '1,14p' | sed 's/^/      /'

say "the backlog now: the three beads closed with their evidence, and the groomers' new beads"
$CHUM backlog --all | sed 's/^/    /'

say "done: three beads merged in dependency order, nobody started a run by hand; tk-2b's mistake cost a Semgrep scan, not a test run"
git -C "$STATE/project" log --oneline -n 8 main
echo
if [[ "${CHUM_DEMO_KEEP:-0}" == "1" ]]; then
    say "keeping the server and worker up: the console http://127.0.0.1:$API_PORT/ (token in $TOKEN_FILE), the Temporal UI http://127.0.0.1:$UI_PORT; \`target/debug/chum --config $CONFIG resume demo\` lets the dispatcher start the groomers' beads. Ctrl-C stops."
    wait "$WORKER_PID" || true
else
    echo "The dev server and worker stop now. Run \`CHUM_DEMO_KEEP=1 make demo\` to keep them (the"
    echo "console on http://127.0.0.1:$API_PORT/ and the Temporal UI on http://127.0.0.1:$UI_PORT) up afterwards."
fi

#!/usr/bin/env bash
# `make up`: a Temporal dev server (persistent, UI on :8233) and the worker against
# configs/chum.toml (or $CHUM_CONFIG), for real use. Ctrl-C stops both.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$CHUM_ROOT"

CONFIG="${CHUM_CONFIG:-configs/chum.toml}"
STATE=".chum/dev"
[[ -f "$CONFIG" ]] || fail "$CONFIG does not exist: copy configs/chum.example.toml to configs/chum.toml and set your project's repo"

cleanup() { stop_pid "$STARTED_SERVER_PID" "Temporal dev server"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

bash scripts/setup.sh
cargo build -p worker -p chum-cli -p chum-netbridge
"$CHUM_ROOT/target/debug/worker" --config "$CONFIG" --check
start_dev_server "$STATE" 7233 8233
say "worker running against $CONFIG; Temporal UI: http://127.0.0.1:8233. Ctrl-C stops."
"$CHUM_ROOT/target/debug/worker" --config "$CONFIG"

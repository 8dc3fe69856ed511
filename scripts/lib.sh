# Shared helpers for scripts/demo.sh and scripts/dev.sh. Source it; do not run it.

CHUM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$CHUM_ROOT/.tools/bin:$CHUM_ROOT/.tools/venv/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

# temporal_up <host:port>: is a Temporal server answering there?
temporal_up() {
    temporal operator cluster health --address "$1" >/dev/null 2>&1
}

# start_dev_server <state dir> <port> <ui port>
# Starts `temporal server start-dev` with a persistent database under the state dir, logging to a
# file and recording its PID, unless a server already answers on the port (then it is reused).
# Sets STARTED_SERVER_PID when it started one.
STARTED_SERVER_PID=""
start_dev_server() {
    local state="$1" port="$2" ui_port="$3"
    mkdir -p "$state"
    if temporal_up "127.0.0.1:$port"; then
        say "reusing the Temporal server already running on 127.0.0.1:$port (UI: http://127.0.0.1:$ui_port)"
        return 0
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        fail "port $port is taken by something that is not a Temporal server; free it and run again"
    fi
    say "starting the Temporal dev server (db $state/temporal.db, UI http://127.0.0.1:$ui_port, log $state/temporal.log)"
    # The transfer queue's reads capped at 20 a second added ~37 ms to every task under load
    # (docs/BENCHMARKS.md, "The dispatch delay"); the test kit's DEV_SERVER_DYNAMIC_CONFIG is the same.
    temporal server start-dev --db-filename "$state/temporal.db" --ip 127.0.0.1 --port "$port" \
        --ui-port "$ui_port" --log-level warn \
        --dynamic-config-value history.transferProcessorMaxPollRPS=10000 >"$state/temporal.log" 2>&1 &
    STARTED_SERVER_PID=$!
    echo "$STARTED_SERVER_PID" >"$state/temporal.pid"
    for _ in $(seq 1 120); do
        if temporal_up "127.0.0.1:$port"; then
            return 0
        fi
        if ! kill -0 "$STARTED_SERVER_PID" 2>/dev/null; then
            tail -n 20 "$state/temporal.log" >&2
            fail "the Temporal dev server exited; its log is above ($state/temporal.log)"
        fi
        sleep 0.5
    done
    fail "the Temporal dev server did not answer within 60s; see $state/temporal.log"
}

# stop_pid <pid> <name>: TERM, wait, then KILL.
stop_pid() {
    local pid="$1" name="$2"
    [[ -n "$pid" ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.25
    done
    echo "($name did not stop within 10s; killing it)" >&2
    kill -KILL "$pid" 2>/dev/null || true
}

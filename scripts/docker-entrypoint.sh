#!/usr/bin/env bash
# The worker image's entrypoint (Dockerfile). Before the worker starts it
#   - checks that the configuration file is there and is a file (a bind mount of a path that did not
#     exist on the host arrives as an empty directory), saying what to do when it is not;
#   - makes the state directory (CHUM__STATE_DIR) and checks that this user can write it;
#   - marks every repository under CHUM_REPOS_DIR as a git safe.directory: a mounted repository is
#     owned by its owner on the host, and git refuses one owned by another user ("dubious
#     ownership") even to read it;
# then runs the worker with the configuration, or the command it was given with the same
# environment (`chum demo init /repos/demo`, `chum doctor`, `bash`).
#
#   docker-entrypoint.sh                 the worker (`worker --config $CHUM_CONFIG`)
#   docker-entrypoint.sh --check ...     the worker with these flags
#   docker-entrypoint.sh healthcheck     exit 0 when the worker's GET /health says ok
#   docker-entrypoint.sh CMD ARGS...     CMD, after the same preparation
#
# The e2e test `compose` runs this same file outside Docker, with the variables pointing elsewhere.
set -euo pipefail

config="${CHUM_CONFIG:-/etc/chum/docker.toml}"
repos="${CHUM_REPOS_DIR:-/repos}"
state="${CHUM__STATE_DIR:-}"

fail() {
    printf 'docker-entrypoint: %s\n' "$*" >&2
    exit 1
}

# GET http://<CHUM__API__BIND>/health (all interfaces asked through loopback); the image has
# Python for DoD commands, so no HTTP client is added for this alone. Prints the failed checks.
healthcheck() {
    local bind="${CHUM__API__BIND:-127.0.0.1:8900}"
    local host="${bind%:*}" port="${bind##*:}"
    case "$host" in
        0.0.0.0 | "" | "[::]") host=127.0.0.1 ;;
    esac
    exec python3 - "http://$host:$port/health" <<'PY'
import json, sys, urllib.error, urllib.request
url = sys.argv[1]
try:
    with urllib.request.urlopen(url, timeout=8) as answer:
        report = json.load(answer)
except urllib.error.HTTPError as e:
    report = json.load(e)
except (OSError, ValueError) as e:
    sys.exit(f"unhealthy: {url}: {e}")
failed = [f"{c['name']}: {c['detail']}" for c in report.get("checks", []) if not c.get("ok")]
if report.get("ok") is not True:
    sys.exit("unhealthy: " + "; ".join(failed))
print(f"healthy: {url}")
PY
}

if [[ "${1:-}" == "healthcheck" ]]; then
    healthcheck
fi

# The configuration.
if [[ -d "$config" ]]; then
    fail "the configuration $config is a directory, not a file: Docker makes an empty directory when a bind-mounted file does not exist on the host. Create the file (e.g. cp configs/chum.example.toml configs/chum.toml), point CHUM_CONFIG at it in .env, and start again"
fi
if [[ ! -e "$config" ]]; then
    fail "the configuration $config does not exist: set CHUM_CONFIG (in .env) to a file under /etc/chum (the repository's configs/ directory), e.g. /etc/chum/docker.toml"
fi
if [[ ! -r "$config" ]]; then
    fail "the configuration $config cannot be read by uid $(id -u): make it readable (chmod a+r) on the host"
fi
export CHUM_CONFIG="$config"

# The state directory (SQLite store, audit log, worktrees).
if [[ -n "$state" ]]; then
    if ! error="$(mkdir -p "$state" 2>&1)"; then
        fail "cannot create the state directory $state as uid $(id -u) (${error#mkdir: }): give that user the volume, or set CHUM_UID/CHUM_GID in .env to its owner"
    fi
    probe="$state/.write-test-$$"
    if ! : >"$probe" 2>/dev/null; then
        fail "the state directory $state is not writable by uid $(id -u): give that user the volume (e.g. docker compose run --rm --user root worker chown -R $(id -u):$(id -g) $state), or set CHUM_UID/CHUM_GID in .env to its owner"
    fi
    rm -f "$probe"
fi

# A home git can write its global config to. docker-compose.yml puts it in the state volume
# (HOME=/var/lib/chum/home), so `docker compose exec worker chum ...` sees the same safe.directory
# list; elsewhere `user:` may name a uid the image has no home for.
if [[ -n "${HOME:-}" && ! -e "$HOME" ]]; then
    mkdir -p "$HOME" 2>/dev/null || true
fi
if [[ -z "${HOME:-}" || ! -w "${HOME:-/nonexistent}" ]]; then
    [[ -n "$state" ]] || fail "HOME (${HOME:-unset}) is not writable and CHUM__STATE_DIR is not set: set one of them"
    export HOME="$state/home"
    mkdir -p "$HOME"
fi

# safe.directory for each repository under the repos directory (and the directory itself, when it
# is one), added once: a restart does not add it again. A repository added later needs a restart.
if [[ -d "$repos" ]]; then
    known="$(git config --global --get-all safe.directory 2>/dev/null || true)"
    for dir in "$repos" "$repos"/*/; do
        dir="${dir%/}"
        [[ -d "$dir" ]] || continue
        if [[ -e "$dir/.git" || (-f "$dir/HEAD" && -d "$dir/objects") ]]; then
            if ! grep -qxF -- "$dir" <<<"$known"; then
                git config --global --add safe.directory "$dir"
            fi
        fi
    done
fi

if [[ $# -eq 0 ]]; then
    exec worker --config "$config"
fi
if [[ "$1" == -* ]]; then
    exec worker --config "$config" "$@"
fi
exec "$@"

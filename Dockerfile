# The CHUM worker image: the worker, the `chum` CLI, the scripted agent and the sandbox's network
# bridge, with what a run needs at run time (git, bubblewrap, Semgrep, Python for the demo's DoD).
# docker-compose.yml builds and runs it; the README ("Running with Docker") says how.
# `make test-docker` lints this file (hadolint, .hadolint.yaml) and the e2e test `compose` runs its
# entrypoint (scripts/docker-entrypoint.sh) and configs/docker.toml outside Docker.

FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p worker -p chum-cli -p chum-scripted-agent -p chum-netbridge

FROM debian:bookworm-20260824-slim
# Semgrep's version is the one scripts/setup.sh pins for the tests.
ARG SEMGREP_VERSION=1.182.0
# git for worktrees and commits, bubblewrap for the agent sandbox, python3 (and venv for Semgrep)
# for the DoD commands of Python projects like the demo's, ca-certificates for agents that call
# their APIs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git bubblewrap python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# Semgrep in a venv of its own, so its Python packages never meet a project's; only the `semgrep`
# command goes on PATH (CHUM finds semgrep-core beside the real file).
RUN python3 -m venv /opt/semgrep \
    && /opt/semgrep/bin/pip install --no-cache-dir --disable-pip-version-check "semgrep==${SEMGREP_VERSION}" \
    && ln -s /opt/semgrep/bin/semgrep /usr/local/bin/semgrep \
    && semgrep --version --disable-version-check
COPY --from=build /src/target/release/worker /src/target/release/chum /src/target/release/chum-scripted-agent /src/target/release/chum-netbridge /usr/local/bin/
COPY scripts/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY configs /etc/chum
# An unprivileged user owns the state directory, so a fresh named volume mounted there is
# writable; docker-compose.yml runs as CHUM_UID:CHUM_GID (the owner of your repositories).
RUN useradd --create-home --uid 1000 --user-group chum \
    && mkdir -p /var/lib/chum /repos \
    && chown chum:chum /var/lib/chum /repos
USER 1000:1000
ENV CHUM_CONFIG=/etc/chum/docker.toml \
    CHUM__STATE_DIR=/var/lib/chum \
    CHUM_REPOS_DIR=/repos
EXPOSE 8900
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=5 CMD ["docker-entrypoint.sh", "healthcheck"]
ENTRYPOINT ["docker-entrypoint.sh"]

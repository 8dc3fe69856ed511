# The CHUM worker and CLI. Used by docker-compose.yml; see the README ("Running with Docker").
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p worker -p chum-cli -p chum-scripted-agent -p chum-netbridge

FROM debian:bookworm-slim
# git for worktrees and commits, python3 for DoD commands of Python projects, ca-certificates for
# agents that call their APIs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/worker /src/target/release/chum /src/target/release/chum-scripted-agent /src/target/release/chum-netbridge /usr/local/bin/
COPY configs /etc/chum/configs
ENV CHUM_CONFIG=/etc/chum/chum.toml
ENTRYPOINT ["worker"]

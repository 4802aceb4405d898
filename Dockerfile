# Three stages: the dependency recipe, the build (dependencies in a layer of
# their own, rebuilt only when Cargo.toml or Cargo.lock change), and a slim
# runtime. Bases are pinned; bump them deliberately, together with the
# toolchain the tests run on.
FROM rust:1.95.0-bookworm AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin authledger
COPY . .
RUN cargo build --release --locked --bin authledger

FROM debian:12.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data authledger \
 && mkdir /data && chown authledger /data
COPY --from=build /src/target/release/authledger /usr/local/bin/authledger
USER authledger
WORKDIR /data
EXPOSE 8080
# No HEALTHCHECK here: a `worker` container has no /healthz. Where the role
# serves HTTP, the orchestrator asks `authledger healthcheck` (no curl in
# the image), as docker-compose.yml does, or /healthz and /readyz.
ENTRYPOINT ["authledger"]
CMD ["all"]

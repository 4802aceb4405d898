# Multi-stage build: compile in the Rust image, run on a slim Debian.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin authledger

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data authledger \
 && mkdir /data && chown authledger /data
COPY --from=build /src/target/release/authledger /usr/local/bin/authledger
USER authledger
WORKDIR /data
EXPOSE 8080
ENTRYPOINT ["authledger"]
CMD ["all"]

# syntax=docker/dockerfile:1
# The reportjob image: the controller, and the worker/assemble commands its Jobs run (one binary).
# Build it from the repository root:
#   docker build -t ghcr.io/reportjob/reportjob:0.1.0 .
# The tag is the crate version in Cargo.toml, which is also the Helm chart's appVersion
# (charts/reportjob), so the chart's default image is this one.

FROM rust:1-bookworm AS builder
WORKDIR /src
# libclang: the pg_query crate (Postgres's own parser) generates its bindings with bindgen.
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev clang \
    && rm -rf /var/lib/apt/lists/*
# The whole workspace (the test cluster crates are members, so cargo needs their manifests); .dockerignore keeps
# target/, caches and reports out of the context.
COPY . .
# Cache mounts keep the registry and build artefacts between builds; the binary is copied out of
# the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin reportjob \
    && install -D -m 0755 target/release/reportjob /out/reportjob

# glibc, libgcc and CA certificates, no shell; the nonroot variant runs as 65532:65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/reportjob /usr/local/bin/reportjob
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/reportjob"]

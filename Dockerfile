# syntax=docker/dockerfile:1
#
# Shopfloor: one image for every role. The container runs `shopfloor serve` (all
# roles) unless told otherwise, e.g. `serve --role api` (see docs/operations.md).
#
#   docker build -t shopfloor:0.1.0 .
#
# The build stage's cargo command is also what scripts/build-release.sh runs in CI,
# so CI proves this build step without a container engine; tests/e2e/deploy.rs
# fails when the two commands differ.

ARG RUST_VERSION=1.95

# --- build: the release binary -------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Sources, manifests, the lock file, migrations (embedded at compile time by
# sqlx::migrate!) and the dashboard assets (embedded by include_bytes!); see
# .dockerignore for what stays out.
COPY . .
# The release profile keeps line tables (125 MB); the image drops the debug info but
# keeps the symbols, so a backtrace still names its functions (about 30 MB).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin shopfloor \
    && install -D -m 0755 target/release/shopfloor /out/shopfloor \
    && strip --strip-debug /out/shopfloor

# --- run: glibc and libgcc only, no shell, non-root ------------------------------
# distroless/cc matches the build stage's Debian 12 (glibc); the binary needs no
# OpenSSL (rustls) and no other shared library.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/shopfloor /usr/local/bin/shopfloor
# 65532 is distroless's `nonroot`; numeric, so Kubernetes can check runAsNonRoot.
USER 65532:65532
# Inside a container the API must listen on every interface, not on loopback.
ENV SHOPFLOOR_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/shopfloor"]
CMD ["serve"]

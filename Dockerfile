# FlightSim P2P server image: QUIC + WebTransport on UDP 4433, HTTP (/healthz,
# /metrics, /cert-hash, WebSocket fallback /ws, demo page) on TCP 8080.
#
#   docker build -t flightsim-p2p .
#   docker run -d --name fsp2p -p 4433:4433/udp -p 8080:8080 \
#     -v fsp2p-certs:/data/certs -e FSP2P_TURN_SECRET=... flightsim-p2p
#
# Configuration is by environment only: every `flightsim-p2p serve --help` flag
# has an FSP2P_* variable (FSP2P_TURN_SECRET, FSP2P_STUN_URLS, FSP2P_CERT, ...).
# See DEPLOYMENT.md. coturn has its own image: stun/Dockerfile.

# Same toolchain as development and CI (Cargo.toml's rust-version is the minimum).
ARG RUST_VERSION=1.95

# ---------------------------------------------------------------------------
# Build stages. cargo-chef gives the dependencies their own cached layer: the
# recipe (a skeleton of Cargo.toml/Cargo.lock with a stub for every target the
# manifest declares: lib, bin, benches) changes only when dependencies or
# targets do, so editing src/ does not recompile ~250 crates.
# ---------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION=0.1.78
RUN cargo install --locked cargo-chef --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
# 1. Dependencies only (cached while recipe.json is unchanged).
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
# 2. The crate itself, with the same command CI's cargo steps exercise.
COPY . .
RUN cargo build --release --locked \
    && cp target/release/flightsim-p2p /usr/local/bin/flightsim-p2p \
    && strip --strip-debug /usr/local/bin/flightsim-p2p \
    && /usr/local/bin/flightsim-p2p --version

# ---------------------------------------------------------------------------
# Runtime stage: Debian slim (the binary links glibc), curl for HEALTHCHECK.
# (distroless/cc would be smaller but has no shell or HTTP client for a
# HEALTHCHECK, and flightsim-p2p itself has no HTTP GET subcommand.)
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim

# curl 7.88.1 is bookworm's; the glob keeps Debian security updates installable.
ARG CURL_VERSION=7.88.1-*
# CA roots (dated versions; Debian updates them), for cluster mode's rediss://
# to a managed Redis with a public CA.
ARG CA_CERTIFICATES_VERSION=20*

SHELL ["/bin/sh", "-eu", "-c"]

# Unprivileged user with a fixed numeric id (same id as the coturn image, so one
# TLS key file owned by uid 10001 serves both), and the writable directory for
# the development certificate (a volume in docker-compose.yml).
RUN apt-get update \
    && apt-get install -y --no-install-recommends "curl=${CURL_VERSION}" \
        "ca-certificates=${CA_CERTIFICATES_VERSION}" \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 fsp2p \
    && useradd --system --uid 10001 --gid fsp2p --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin fsp2p \
    && install -d -o fsp2p -g fsp2p -m 0750 /data /data/certs

COPY --from=build /usr/local/bin/flightsim-p2p /usr/local/bin/flightsim-p2p
COPY client/web /app/web

WORKDIR /app

# Defaults for a container; override any of them with -e / environment:.
#   FSP2P_LISTEN   QUIC/WebTransport on every interface of the container.
#   PORT           HTTP port: the server listens on 0.0.0.0:$PORT. PORT rather
#                  than FSP2P_HTTP_LISTEN on purpose: an explicit
#                  FSP2P_HTTP_LISTEN beats $PORT in the server, and Railway (and
#                  other PaaS) inject PORT and health-check that port.
#   FSP2P_CERT_DIR where the dev certificate is kept (mount a volume there so
#                  its hash survives restarts); FSP2P_CERT/FSP2P_KEY replace it.
#   FSP2P_WEB_DIR  the browser demo and client library.
#   NO_COLOR       plain log lines (no ANSI colours) for log collectors.
ENV FSP2P_LISTEN=0.0.0.0:4433 \
    PORT=8080 \
    FSP2P_CERT_DIR=/data/certs \
    FSP2P_WEB_DIR=/app/web \
    NO_COLOR=1

USER 10001:10001

# QUIC + WebTransport (UDP) and HTTP + WebSocket fallback (TCP).
EXPOSE 4433/udp 8080/tcp

# /healthz answers 200 with a JSON summary. Through sh so $PORT follows the
# environment (if you set FSP2P_HTTP_LISTEN to another port, set PORT to match).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS -o /dev/null \"http://127.0.0.1:${PORT}/healthz\" || exit 1"]

# SIGTERM: the server sends GoingAway (in cluster mode it first hands its
# sessions to another node), drains for up to 3 s (FSP2P_DRAIN_TIMEOUT_MS),
# and exits 0. Give `docker stop -t` more than that.
STOPSIGNAL SIGTERM

# No ENTRYPOINT, so platforms that replace the command (Fly processes, Railway's
# startCommand) can run a shell or add flags.
CMD ["flightsim-p2p", "serve"]

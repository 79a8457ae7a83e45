# sessiond container image (docs/deployment.md explains every choice).
#
#   docker build -t sessiond:0.1.0 .
#   docker run -p 8080:8080 -v sessiond-data:/var/lib/sessiond \
#     -v "$PWD/keys:/etc/sessiond/keys:ro" -e SESSIOND_API_KEYS=/etc/sessiond/keys sessiond:0.1.0
#
# Stage 1 builds with the project's own dependency script and Makefile;
# stage 2 is Debian 12 slim with only the shared libraries the binary needs
# (tests/e2e/test_deploy_files.py checks the list against the binary).

FROM debian:12-slim AS build
WORKDIR /src
COPY . .
RUN scripts/install-deps.sh build \
 && rm -rf build var \
 && make build/sessiond \
 && strip --strip-unneeded -o /sessiond build/sessiond

FROM debian:12-slim AS runtime
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libhttp-parser2.9 libsqlite3-0 libjansson4 libssl3 libpq5 libhiredis0.14 libcurl4 libjemalloc2 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sessiond \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sessiond --shell /usr/sbin/nologin sessiond \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/sessiond
COPY --from=build /sessiond /usr/local/sbin/sessiond
# Listening beyond loopback needs --api-keys (SESSIOND_API_KEYS): without
# keys sessiond refuses to start (protected mode).
ENV SESSIOND_LISTEN=0.0.0.0:8080 \
    SESSIOND_DATA_DIR=/var/lib/sessiond
USER 10001:10001
VOLUME ["/var/lib/sessiond"]
EXPOSE 8080
# No HEALTHCHECK: the image carries no HTTP client, and orchestrators probe
# /healthz and /readyz themselves (deploy/k8s/deployment.yaml).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/sbin/sessiond"]

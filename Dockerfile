# syntax=docker/dockerfile:1
# proxyto container image: a static binary on scratch, run as 65532:65532.
#
#   podman build --pull=never --network host --format docker -t proxyto:dev .
#   docker build -t proxyto:dev .
#
# Configure it with PROXYTO_* environment variables rather than flags where you
# can: the HEALTHCHECK runs `/proxyto healthcheck`, which reads PROXYTO_ADMIN too,
# so it follows the admin address that way and not when --admin is a flag.
# (OCI-format images drop HEALTHCHECK: build with --format docker under podman.)

FROM golang:1.26-bookworm AS build
# VERSION is stamped into `proxyto version` and the logs.
ARG VERSION=dev
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" -o /out/proxyto ./cmd/proxyto
# A passwd/group entry for the numeric user, and the CA bundle (https
# upstreams are verified against it).
RUN mkdir -p /out/etc/ssl/certs && \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > /out/etc/passwd && \
    printf 'root:x:0:\nnonroot:x:65532:\n' > /out/etc/group && \
    cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt

FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="proxyto" \
      org.opencontainers.image.description="Forward-proxy gateway routed by X-Proxy-To" \
      org.opencontainers.image.source="https://github.com/proxyto/proxyto" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/etc/passwd /out/etc/group /etc/
COPY --from=build /out/etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/proxyto /proxyto
ENV PROXYTO_LISTEN=:8080 \
    PROXYTO_ADMIN=0.0.0.0:9090 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/proxyto", "healthcheck"]
ENTRYPOINT ["/proxyto"]

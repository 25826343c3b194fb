# syntax=docker/dockerfile:1
# Bridgehead image: one static binary, both roles (serve --role api|forwarder).
# Build: docker build --build-arg VERSION=1.2.3 -t bridgehead:1.2.3 .
# The final stage is distroless static, running as nonroot (UID/GID 65532): the Kubernetes
# pods' runAsUser/fsGroup and the NFS export's owner (deploy/nfs) use the same IDs.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ENV GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/bridgehead ./cmd/bridgehead

# Pinned by tag; Dependabot (.github/dependabot.yml) proposes digest/tag updates. To pin by digest:
#   crane digest gcr.io/distroless/static-debian12:nonroot
FROM gcr.io/distroless/static-debian12:nonroot
# On distroless's PATH, so that `kubectl exec deploy/bridgehead-api -- bridgehead doctor` works
# (the image has no shell).
COPY --from=build /out/bridgehead /usr/local/bin/bridgehead
# The laptop defaults (./data/spool, ./data/delivered.ndjson) land in nonroot's home; listen on
# all interfaces inside the container. The Kubernetes manifests set both explicitly.
WORKDIR /home/nonroot
ENV BRIDGEHEAD_LISTEN=:8080
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/bridgehead"]
CMD ["serve"]

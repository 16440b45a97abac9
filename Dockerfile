# syntax=docker/dockerfile:1
#
# Two images from one file:
#   docker build -t REGISTRY/ecs-metadata-agent:TAG .
#   docker build --target intercept -t REGISTRY/ecs-metadata-intercept:TAG .
# The agent image is static and runs as an unprivileged user; the intercept
# image carries nft and ip for the Kubernetes redirect (deploy/kubernetes).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" \
    -o /out/ecs-metadata-agent ./cmd/ecs-metadata-agent

FROM debian:bookworm-slim AS intercept
RUN apt-get update \
    && apt-get install -y --no-install-recommends nftables iproute2 curl \
    && rm -rf /var/lib/apt/lists/*
COPY deploy/intercept/ecs-metadata-intercept /usr/local/bin/ecs-metadata-intercept
# nft and ip need uid 0 with CAP_NET_ADMIN; the pod grants nothing more.
USER 0:0
ENTRYPOINT ["/usr/local/bin/ecs-metadata-intercept"]
CMD ["run"]

# Last, so that a plain docker build gives the agent.
FROM gcr.io/distroless/static-debian12:nonroot AS agent
COPY --from=build /out/ecs-metadata-agent /usr/local/bin/ecs-metadata-agent
USER 65532:65532
EXPOSE 8998 8999
ENTRYPOINT ["/usr/local/bin/ecs-metadata-agent"]

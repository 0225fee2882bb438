# One image runs every role of Lethe: `lethe api`, `worker`, `relay`, `migrate`.
#
# The build stage runs on the builder's own platform and cross-compiles, so a
# multi-platform build (docker buildx --platform linux/amd64,linux/arm64) needs
# no emulation. CGO is off: the binary is static and the runtime image has no
# libc, shell or package manager.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src

# Modules first, so source edits do not re-download them.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w" -o /out/lethe ./cmd/lethe

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/lethe /lethe
# The distroless "nonroot" user; the Helm chart's securityContext expects it.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/lethe"]

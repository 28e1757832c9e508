# syntax=docker/dockerfile:1
# The Sconce operator image (`sconce`); build with the workspace as context:
#   docker build -t sconce .
# hack/images.sh builds the same final stage here without Docker (a test compares the two).

FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sconce \
 && install -D target/release/sconce /out/sconce

# Small glibc runtime with CA certificates, no shell, non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sconce /usr/local/bin/sconce
USER 65532:65532
ENV SCONCE_ADMIN_ADDR=0.0.0.0:8081
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/sconce"]

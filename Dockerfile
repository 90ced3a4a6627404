# syntax=docker/dockerfile:1
# jwt-revoker's container image: built in a Rust image, run from distroless as non-root.
#   docker build -t jwt-revoker:dev .
#   docker run --rm --read-only -p 9191:9191 -p 9192:9192 -p 9090:9090 \
#     -v "$PWD/my-config.toml:/etc/jwt-revoker/config.toml:ro" \
#     -e JWT_REVOKER_ADMIN_TOKEN -e JWT_REVOKER_STORE_URL jwt-revoker:dev
# The root filesystem can be read-only: with Redis (JWT_REVOKER_STORE_URL) nothing is
# written; the embedded store needs a writable volume at its data_dir, /var/lib/jwt-revoker
# (owned by 65532 in the image, so a named volume there is writable:
#   -v jwt-revoker-data:/var/lib/jwt-revoker).

# The toolchain the project is built and tested with (redb needs at least 1.90).
FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that a change to the sources alone reuses their layer.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin jwt-revoker \
    && rm -rf src
COPY src ./src
# touch: make cargo rebuild the crate over the placeholder built above.
# /out/var-lib/jwt-revoker: the embedded store's data_dir (deploy/docker-config.toml), made
# here because the final image has no shell to make it.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin jwt-revoker \
    && install -D -m 0755 target/release/jwt-revoker /out/jwt-revoker \
    && install -d -m 0750 /out/var-lib/jwt-revoker

# glibc and libgcc only (aws-lc is linked statically); uid/gid 65532, no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/jwt-revoker /usr/local/bin/jwt-revoker
COPY deploy/docker-config.toml /etc/jwt-revoker/config.toml
# The directory itself is what is copied into /var/lib, so it is owned by 65532 and a named
# volume mounted there starts out writable by it (Docker copies the image's ownership into
# a new volume).
COPY --from=build --chown=65532:65532 /out/var-lib/ /var/lib/
USER 65532:65532
# authorization (ext_authz Check), admin API, Prometheus /metrics
EXPOSE 9191 9192 9090
ENTRYPOINT ["/usr/local/bin/jwt-revoker"]
CMD ["serve", "--config", "/etc/jwt-revoker/config.toml", "--log-format", "json"]

# The seatflow image the k8s/ manifests run (every role is the same binary).
#   docker build -t ghcr.io/seatflow/seatflow:0.1.0 .
# The build compiles RocksDB's and librdkafka's C/C++ (about 20 minutes on 2 cores).
FROM rust:1.89-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libclang-dev pkg-config libssl-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin seatflow

# The binary needs only zlib and the C++ runtime (ldd: libz, libstdc++, libgcc_s, libc).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends zlib1g libstdc++6 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/seatflow /usr/local/bin/seatflow
# The seat processor's store lives on its volume at /data (writable by this user).
RUN mkdir /data && chown 65532:65532 /data
USER 65532:65532
ENTRYPOINT ["seatflow"]

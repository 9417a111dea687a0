#!/usr/bin/env bash
# Builds the deployable artifacts with cargo-lambda: target/lambda/s3-replicator/bootstrap for
# arm64 (the template's default) and for x86_64.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
rustup target add aarch64-unknown-linux-gnu x86_64-unknown-linux-gnu >/dev/null
cargo lambda build --release --arm64 --lambda-dir target/lambda-arm64
cargo lambda build --release --x86-64 --lambda-dir target/lambda-x86_64
for arch in arm64 x86_64; do
  file "target/lambda-$arch/s3-replicator/bootstrap" 2>/dev/null || ls -l "target/lambda-$arch/s3-replicator/bootstrap"
done

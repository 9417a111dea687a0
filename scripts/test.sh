#!/usr/bin/env bash
# Runs every test: unit tests, event decoding, replication across two accounts on the local
# S3 emulator, and the compiled function under cargo-lambda's Lambda runtime emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
cargo test "$@"

#!/usr/bin/env bash
# Measures the release function copying 256 MiB and 1 GiB objects on the local S3 emulator:
# single-request vs parallel-part wall time, and the function's peak resident memory.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
cargo build --release --quiet --bin s3-replicator
exec .venv/bin/python scripts/measure-large-copy.py "$@"

#!/usr/bin/env bash
# Runs the replicator locally: an S3 emulator with accounts A and B, the function under
# cargo-lambda's Lambda runtime emulator, objects uploaded to A's bucket and replicated into B's.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
cargo build --quiet --bin s3-replicator
exec .venv/bin/python scripts/demo.py "$@"

#!/usr/bin/env bash
# Event-mode benchmark: installs Garage (a local S3 server; the first build takes about 16
# minutes), then drives the release binary with SQS batches of S3 notifications. BENCH_OBJECTS
# sets the object count (default 5000).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v garage >/dev/null; then
  cargo install garage --locked --version 2.5.0
fi
exec python3 scripts/bench-event.py "$@"

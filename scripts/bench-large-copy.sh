#!/usr/bin/env bash
# Large-copy benchmark: installs Garage (a local S3 server; the first build takes about 16
# minutes), then times the replicator copying a large object in parts, by part size and part
# concurrency, in one invocation and handed from invocation to invocation. BENCH_LARGE_MIB sets
# the object's size (default 2048), BENCH_REPEATS the repeats (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v garage >/dev/null; then
  cargo install garage --locked --version 2.5.0
fi
exec python3 scripts/bench-large-copy.py "$@"

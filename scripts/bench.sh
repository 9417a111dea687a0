#!/usr/bin/env bash
# Every benchmark in docs/benchmarks.md, in one run: event mode (scripts/bench-event.sh), then
# backfill against a raw CopyObject loop (scripts/bench-backfill.sh; BENCH_TOOLS=1 adds `aws s3
# sync` and rclone), then large copies in parts (scripts/bench-large-copy.sh). Each installs
# Garage, a local S3 server, on first use (about 16 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bench-event.sh
scripts/bench-backfill.sh
scripts/bench-large-copy.sh

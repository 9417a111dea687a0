#!/usr/bin/env bash
# Backfill benchmark: installs Garage (a local S3 server; the first build takes about 16 minutes),
# the AWS CLI and rclone, then compares the replicator's backfill at its default settings with a
# raw CopyObject loop swept over concurrencies, without and with 20-60 ms of added latency, and
# (BENCH_TOOLS=1) with `aws s3 sync` and rclone. BENCH_OBJECTS sets the object count (default
# 100000), BENCH_REPEATS the repeats (default 6).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v garage >/dev/null; then
  cargo install garage --locked --version 2.5.0
fi
if ! command -v rclone >/dev/null; then
  apt-get update -qq && apt-get install -y -qq rclone
fi
if [ ! -x .venv-bench/bin/aws ]; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install --quiet --disable-pip-version-check awscli==1.46.2
fi
exec python3 scripts/bench-backfill.py "$@"

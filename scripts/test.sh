#!/usr/bin/env bash
# Runs every test: unit tests, event decoding, replication across two accounts on the local
# S3 emulator, and the compiled function under cargo-lambda's Lambda runtime emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test "$@" 2>&1 | tee "$log"
# One line with the totals of every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"

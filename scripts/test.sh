#!/usr/bin/env bash
# Runs every test: unit tests, event decoding, replication across two accounts on the local
# S3 emulator, and the compiled function under cargo-lambda's Lambda runtime emulator. Then scans
# everything the run logged (the function's log lines at debug level, the function binary's
# output, the test output) for the secrets the emulators handed out, presigned URLs, signatures
# and whole payloads.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
logs="$PWD/target/test-logs"
rm -rf "$logs"
mkdir -p "$logs/run"
export S3R_TEST_LOG_DIR="$logs/run" S3R_SECRETS_FILE="$logs/secrets.jsonl"
if [ $# -gt 0 ]; then
  cargo test "$@" 2>&1 | tee "$logs/run/cargo-test.log"
else
  # The fault test's event mode runs once, on versioned buckets, below.
  cargo test -- --skip event_mode_loses_nothing_under_faults 2>&1 | tee "$logs/run/cargo-test.log"
  # The suites where versioning changes what S3 does run again with both buckets versioned: a
  # delete leaves a delete marker, the doctor's delete probe stands down, copies in parts read by
  # version.
  export S3R_TEST_VERSIONED=1
  cargo test --test event_mode --test multipart --test chain --test backfill --test doctor \
    --test least_privilege --test versions 2>&1 | tee "$logs/run/cargo-test-versioned.log"
  cargo test --test faults event_mode 2>&1 | tee -a "$logs/run/cargo-test-versioned.log"
  unset S3R_TEST_VERSIONED
fi
# The figures the tests measured, then one line with the totals of every test binary.
cat "$logs/run/figures.txt" 2>/dev/null || true
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$logs/run"/cargo-test*.log
.venv/bin/python scripts/scan-logs.py "$logs/run" "$S3R_SECRETS_FILE"

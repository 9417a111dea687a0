#!/usr/bin/env bash
# Installs what the demo and the tests need besides Rust: a Python virtual environment in .venv
# with the pinned S3 emulator (moto) and cargo-lambda. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=tests/emulator/requirements.txt
stamp=.venv/.installed
if [ -f "$stamp" ] && cmp -s "$requirements" "$stamp"; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"

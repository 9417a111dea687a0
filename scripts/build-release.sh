#!/usr/bin/env bash
# Builds the deployable package with cargo-lambda: target/lambda-package holds the function for
# arm64 and for x86_64 and a bootstrap that runs the right one (scripts/package-lambda.sh); the
# single-architecture builds are in target/lambda-arm64 and target/lambda-x86_64.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
scripts/package-lambda.sh target/lambda-package

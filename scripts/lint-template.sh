#!/usr/bin/env bash
# Lints template.yaml offline: cfn-lint 1.53.3 (the last release that expands the SAM transform)
# and `sam validate --lint`, both pinned in .venv-lint.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-lint/bin/sam ] || [ ! -x .venv-lint/bin/cfn-lint ]; then
  python3 -m venv .venv-lint
  .venv-lint/bin/pip install --quiet --disable-pip-version-check "cfn-lint==1.53.3" "aws-sam-cli==1.170.0"
fi
.venv-lint/bin/cfn-lint template.yaml
SAM_CLI_TELEMETRY=0 .venv-lint/bin/sam validate --lint --region us-east-1 --template template.yaml
echo "template.yaml: cfn-lint and sam validate --lint clean"

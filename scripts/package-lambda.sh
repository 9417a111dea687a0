#!/usr/bin/env bash
# Builds the deployable package into DIR (default target/lambda-package): the function built with
# cargo-lambda for arm64 and for x86_64, and a bootstrap that runs the one for the machine it is
# on. The template's Architecture parameter can then be chosen at deploy time. `sam build` calls
# it through the Makefile; it needs cargo-lambda (pip install cargo-lambda) and both Rust targets.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/lambda-package}
rustup target add aarch64-unknown-linux-gnu x86_64-unknown-linux-gnu >/dev/null 2>&1 || true
cargo lambda build --release --arm64 --lambda-dir target/lambda-arm64
cargo lambda build --release --x86-64 --lambda-dir target/lambda-x86_64
mkdir -p "$out"
rm -f "$out/bootstrap" "$out/bootstrap-arm64" "$out/bootstrap-x86_64"
cp target/lambda-arm64/s3-replicator/bootstrap "$out/bootstrap-arm64"
cp target/lambda-x86_64/s3-replicator/bootstrap "$out/bootstrap-x86_64"
cp scripts/lambda/bootstrap "$out/bootstrap"
chmod +x "$out/bootstrap" "$out/bootstrap-arm64" "$out/bootstrap-x86_64"

# Each binary is for the machine it says, and the bootstrap runs this machine's one: the
# binary's own command line prints a bucket policy through it.
check_machine() {
  local machine
  machine=$(od -An -tu2 -j18 -N2 "$1" | tr -d ' ')
  [ "$machine" = "$2" ] || { echo "$1: ELF machine $machine, expected $2" >&2; exit 1; }
}
check_machine "$out/bootstrap-arm64" 183   # EM_AARCH64
check_machine "$out/bootstrap-x86_64" 62   # EM_X86_64
case $(uname -m) in
  x86_64 | aarch64)
    # The whole output first: `grep -q` closing the pipe early would fail the binary's write.
    policy=$("$out/bootstrap" bucket-policy --role-arn arn:aws:iam::111111111111:role/check \
      --bucket check-bucket) || policy=""
    case $policy in
      *AllowS3ReplicatorWrites*) ;;
      *) echo "$out/bootstrap did not run this machine's binary" >&2; exit 1 ;;
    esac
    ;;
esac
ls -l "$out"

"""Measures the release function binary copying large objects on the local S3 emulator: wall
time of a single-request copy against a parallel-part copy, for 256 MiB and 1 GiB objects, and
the function's peak resident memory (VmHWM) while it copies.

The function runs as it does in Lambda: the release binary, served by cargo-lambda's runtime
emulator (`cargo lambda watch --only-lambda-apis`), invoked with an S3 event. Run through
scripts/measure-large-copy.sh. The emulator is moto (Python): its copy speed, not the network's,
bounds these times; what the figures show is the shape (parts in parallel vs one request) and
that memory stays flat whatever the size, since no object bytes pass through the function.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emulator_client import harness, s3, start_emulator, start_listening, stop

from boto3.s3.transfer import TransferConfig

ROOT = Path(__file__).resolve().parents[1]
BINARY = ROOT / "target" / "release" / "s3-replicator"
MIB = 1024 * 1024










def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


class Zeroes:
    """A file-like stream of `size` bytes, so the upload needs no memory of its own."""

    def __init__(self, size: int):
        self.left = size

    def read(self, amount: int = -1) -> bytes:
        amount = self.left if amount < 0 else min(amount, self.left)
        self.left -= amount
        return b"\x5a" * amount


def main() -> int:
    emulator, info = start_emulator()
    processes = [emulator]
    try:
        endpoint = info["endpoint"]
        admin_a, admin_b = s3(endpoint, info["accounts"]["a"]), s3(endpoint, info["accounts"]["b"])
        source, destination = "large-source-a", "large-replica-b"
        admin_a.create_bucket(Bucket=source)
        admin_b.create_bucket(Bucket=destination)
        role = harness(endpoint, "function-role", {"name": "s3-replicator", "parameters": {
            "SourceBucket": source, "DestinationBucket": destination}})
        policy = subprocess.run([str(BINARY), "bucket-policy", "--role-arn", role["role_arn"],
                                 "--bucket", destination], check=True, capture_output=True,
                                text=True).stdout
        admin_b.put_bucket_policy(Bucket=destination, Policy=policy)

        sizes = {"256MiB.bin": 256 * MIB, "1GiB.bin": 1024 * MIB}
        # Uploaded in parts of 64 MiB: copied in parts above MULTIPART_THRESHOLD (with the same
        # layout), and with one CopyObject below it.
        in_parts = TransferConfig(multipart_threshold=64 * MIB, multipart_chunksize=64 * MIB)
        for key, size in sizes.items():
            started = time.monotonic()
            admin_a.upload_fileobj(Zeroes(size), source, key, Config=in_parts)
            print(f"uploaded {key} in {time.monotonic() - started:.1f} s", flush=True)

        runtime, port = start_listening(
            lambda port: ["cargo", "lambda", "watch", "--only-lambda-apis", "--invoke-address",
                          "127.0.0.1", "--invoke-port", str(port), "--timeout", "900"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(runtime)
        event = json.loads((ROOT / "events/s3-put.json").read_text())
        rows = []
        for key, size in sizes.items():
            for mode, threshold in (("single CopyObject", "5GiB"), ("parts of 64 MiB, 16 at once", "64MiB")):
                admin_b.delete_object(Bucket=destination, Key=key)
                env = {**os.environ, "SOURCE_BUCKET": source, "DESTINATION_BUCKET": destination,
                       "S3_FORCE_PATH_STYLE": "true", "AWS_ENDPOINT_URL": endpoint,
                       "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": role["access_key_id"],
                       "AWS_SECRET_ACCESS_KEY": role["secret_access_key"],
                       "AWS_SESSION_TOKEN": role["session_token"],
                       "MULTIPART_THRESHOLD": threshold, "PART_CONCURRENCY": "16",
                       "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{port}/.rt",
                       "AWS_LAMBDA_FUNCTION_NAME": "_", "AWS_LAMBDA_FUNCTION_VERSION": "1",
                       "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256"}
                function = subprocess.Popen([str(BINARY)], env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
                try:
                    event["Records"][0]["s3"]["bucket"]["name"] = source
                    event["Records"][0]["s3"]["object"]["key"] = key
                    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as payload:
                        json.dump(event, payload)
                    started = time.monotonic()
                    result = subprocess.run(["cargo", "lambda", "invoke", "--invoke-address",
                                             "127.0.0.1", "--invoke-port", str(port),
                                             "--data-file", payload.name],
                                            cwd=ROOT, capture_output=True, text=True)
                    seconds = time.monotonic() - started
                    os.unlink(payload.name)
                    if result.returncode != 0 or '"copied":1' not in result.stdout.replace(" ", ""):
                        sys.exit(f"{key} ({mode}) failed: {result.stdout} {result.stderr}")
                    peak = peak_rss_kib(function.pid)
                finally:
                    function.terminate()
                    function.wait(timeout=10)
                head = admin_b.head_object(Bucket=destination, Key=key)
                assert head["ContentLength"] == size, head
                row = {"object": key, "mode": mode, "seconds": round(seconds, 2),
                       "peak_rss_mib": round(peak / 1024, 1), "replica_etag": head["ETag"]}
                rows.append(row)
                print(json.dumps(row), flush=True)
        print("\n| object | copy | seconds | function peak RSS (MiB) |")
        print("|---|---|---:|---:|")
        for row in rows:
            print(f"| {row['object']} | {row['mode']} | {row['seconds']} | {row['peak_rss_mib']} |")
        return 0
    finally:
        stop(processes)


if __name__ == "__main__":
    sys.exit(main())

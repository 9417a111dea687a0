"""Replicates a few objects from account A's bucket into account B's, locally.

1. Starts the S3 emulator (tests/emulator/server.py) holding accounts A and B.
2. Creates the source bucket in A, the destination bucket in B, and the function's role in A with
   the identity policy template.yaml grants.
3. Account B attaches the bucket policy printed by `s3-replicator bucket-policy`.
4. Starts the function under cargo-lambda's Lambda runtime emulator (`cargo lambda watch`).
5. Uploads objects to A; the bucket's notifications land in an SQS queue; the received batch is
   sent to the function with `cargo lambda invoke`.
6. Prints B's listing, read by B's admin: key, size, ETag, owner account.

Exits non-zero if any object is missing in B or differs from its source.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from emulator_client import harness, s3, start_emulator, start_listening, stop


ROOT = Path(__file__).resolve().parents[1]
BINARY = ROOT / "target" / "debug" / "s3-replicator"

UPLOADS = {
    "reports/2026/q3 summary.csv": (b"region,total\neu,42\nus,58\n", "text/csv", "team=finance"),
    "images/red flower+1.jpg": (b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg", "kind=photo"),
    "unicode/日本語.txt": ("こんにちは".encode(), "text/plain; charset=utf-8", ""),
}










def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> int:
    step("starting the S3 emulator (accounts 111111111111 = A, 222222222222 = B)")
    emulator, info = start_emulator()
    processes = [emulator]
    try:
        endpoint = info["endpoint"]
        admin_a, admin_b = s3(endpoint, info["accounts"]["a"]), s3(endpoint, info["accounts"]["b"])
        print(f"emulator at {endpoint}")

        source, destination = "demo-source-a", "demo-replica-b"
        admin_a.create_bucket(Bucket=source)
        admin_b.create_bucket(Bucket=destination)
        role = harness(endpoint, "function-role", {"name": "s3-replicator", "parameters": {
            "SourceBucket": source, "DestinationBucket": destination}})
        print(f"source bucket {source} in A, destination bucket {destination} in B")
        print(f"function role {role['role_arn']}")

        step("account B attaches the policy from `s3-replicator bucket-policy`")
        policy = subprocess.run([str(BINARY), "bucket-policy", "--role-arn", role["role_arn"],
                                 "--bucket", destination], check=True, capture_output=True,
                                text=True).stdout
        print(policy.strip())
        admin_b.put_bucket_policy(Bucket=destination, Policy=policy)

        queue = harness(endpoint, "queue-notifications",
                        {"bucket": source, "queue": "s3-replicator-notifications"})

        step("starting the function under `cargo lambda watch`")
        environment = {
            "SOURCE_BUCKET": source, "DESTINATION_BUCKET": destination,
            "S3_FORCE_PATH_STYLE": "true", "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": role["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": role["secret_access_key"],
            "AWS_SESSION_TOKEN": role["session_token"],
        }
        env_args = [arg for k, v in environment.items() for arg in ("--env-var", f"{k}={v}")]
        watch, port = start_listening(
            lambda port: ["cargo", "lambda", "watch", "--ignore-changes", "--quiet",
                          "--invoke-address", "127.0.0.1", "--invoke-port", str(port), *env_args],
            cwd=ROOT, env={**os.environ, "AWS_LAMBDA_LOG_FORMAT": "JSON"})
        processes.append(watch)

        step(f"uploading {len(UPLOADS)} objects to {source} as A's admin")
        for key, (body, content_type, tags) in UPLOADS.items():
            admin_a.put_object(Bucket=source, Key=key, Body=body, ContentType=content_type,
                               Tagging=tags, Metadata={"uploaded-by": "demo"})
            print(f"  put {key}")

        batch = harness(endpoint, "receive", {"queue_url": queue["queue_url"],
                                              "min_messages": len(UPLOADS) + 1})
        step(f"invoking the function with the {len(batch['Records'])} queued notifications "
             "(one is S3's s3:TestEvent)")
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as payload:
            json.dump(batch, payload)
        result = subprocess.run(["cargo", "lambda", "invoke", "--invoke-address", "127.0.0.1",
                                 "--invoke-port", str(port), "--data-file", payload.name],
                                cwd=ROOT, capture_output=True, text=True)
        os.unlink(payload.name)
        print(f"function response: {result.stdout.strip() or result.stderr.strip()}")
        if result.returncode != 0:
            return 1

        step(f"{destination} (account B), listed by B's admin")
        print(f"{'key':34} {'bytes':>6}  {'etag':34} {'owner':12}  tags / metadata")
        problems = 0
        listed = admin_b.list_objects_v2(Bucket=destination).get("Contents", [])
        for item in listed:
            key = item["Key"]
            owner = harness(endpoint, "object-owner", query={"bucket": destination, "key": key})
            tags = admin_b.get_object_tagging(Bucket=destination, Key=key)["TagSet"]
            head = admin_b.head_object(Bucket=destination, Key=key)
            tag_text = ",".join(f"{t['Key']}={t['Value']}" for t in tags) or "-"
            print(f"{key:34} {item['Size']:>6}  {item['ETag']:34} {owner['owner'] or '?':12}  "
                  f"{tag_text} {head['Metadata']} {head['ContentType']}")
        for key, (body, content_type, _) in UPLOADS.items():
            source_etag = admin_a.head_object(Bucket=source, Key=key)["ETag"]
            try:
                replica = admin_b.get_object(Bucket=destination, Key=key)
            except admin_b.exceptions.NoSuchKey:
                print(f"MISSING in B: {key}")
                problems += 1
                continue
            if replica["Body"].read() != body or replica["ETag"] != source_etag:
                print(f"DIFFERS in B: {key}")
                problems += 1
        print(f"\n{len(UPLOADS) - problems} of {len(UPLOADS)} objects replicated intact")
        return 1 if problems else 0
    finally:
        stop(processes)


if __name__ == "__main__":
    sys.exit(main())

"""Backfill benchmark: the replicator's backfill against `aws s3 sync` and rclone, and against a raw
CopyObject ceiling, on one local Garage server (a production S3 store), with the same data.

Prints a Markdown table of objects/s, S3 requests per object (from Garage's own request
counters) and ratios. Run through scripts/bench-backfill.sh, which installs the tools.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OBJECTS = int(os.environ.get("BENCH_OBJECTS", "10000"))
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Garage:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.s3_port, self.rpc_port, self.admin_port = free_port(), free_port(), free_port()
        self.metrics_token = secrets.token_hex(16)
        self.config = workdir / "garage.toml"
        self.config.write_text(f"""
metadata_dir = "{workdir}/meta"
data_dir = "{workdir}/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{self.rpc_port}"
rpc_public_addr = "127.0.0.1:{self.rpc_port}"
rpc_secret = "{secrets.token_hex(32)}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{self.s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{self.admin_port}"
admin_token = "{secrets.token_hex(16)}"
metrics_token = "{self.metrics_token}"
""")
        self.log = open(workdir / "garage.log", "w")
        self.process = subprocess.Popen(["garage", "-c", str(self.config), "server"],
                                        stdout=self.log, stderr=self.log)
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"

    def cli(self, *args: str) -> str:
        return subprocess.run(["garage", "-c", str(self.config), *args], check=True,
                              capture_output=True, text=True).stdout

    def setup(self) -> dict:
        for _ in range(60):
            if subprocess.run(["garage", "-c", str(self.config), "status"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(1)
        node = self.cli("node", "id").strip()[:64]
        self.cli("layout", "assign", node, "-c", "10G", "-z", "dc1")
        self.cli("layout", "apply", "--version", "1")
        key = json.loads(self.cli("json-api", "CreateKey", json.dumps({"name": "bench"})))
        return {"AWS_ACCESS_KEY_ID": key["accessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["secretAccessKey"]}

    def bucket(self, name: str, key_id: str) -> str:
        self.cli("bucket", "create", name)
        self.cli("bucket", "allow", "--read", "--write", "--owner", name, "--key", key_id)
        return name

    def requests(self) -> int:
        """Total S3 API requests Garage has served, from its Prometheus metrics."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}/metrics",
                                         headers={"Authorization": f"Bearer {self.metrics_token}"})
        text = urllib.request.urlopen(request).read().decode()
        total = 0
        for line in text.splitlines():
            if line.startswith("api_s3_request_counter"):
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def bench_binary(env: dict, *args: str) -> dict:
    output = subprocess.run(["cargo", "bench", "--quiet", "--bench", "backfill", "--", *args],
                            cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="s3-replicator-bench-"))
    garage = Garage(workdir)
    try:
        keys = garage.setup()
        env = {**os.environ, **keys, "AWS_REGION": REGION, "AWS_ENDPOINT_URL": garage.endpoint,
               "AWS_EC2_METADATA_DISABLED": "true"}
        key_id = keys["AWS_ACCESS_KEY_ID"]
        source = garage.bucket("bench-source", key_id)
        load_before = os.getloadavg()
        print(f"Garage {garage.cli('--version').strip()} at {garage.endpoint}; "
              f"{OBJECTS} objects; load average before: {load_before[0]:.2f}", flush=True)
        subprocess.run(["cargo", "bench", "--quiet", "--bench", "backfill", "--no-run"],
                       cwd=ROOT, env=env, check=True)
        print(json.dumps(bench_binary(env, "populate", source, str(OBJECTS))), flush=True)

        aws_config = workdir / "aws-config"
        aws_env = {**env, "AWS_CONFIG_FILE": str(aws_config), "AWS_DEFAULT_REGION": REGION}
        rclone_env = {**env, "RCLONE_CONFIG_GARAGE_TYPE": "s3",
                      "RCLONE_CONFIG_GARAGE_PROVIDER": "Other",
                      "RCLONE_CONFIG_GARAGE_ENDPOINT": garage.endpoint,
                      "RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID": keys["AWS_ACCESS_KEY_ID"],
                      "RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY": keys["AWS_SECRET_ACCESS_KEY"],
                      "RCLONE_CONFIG_GARAGE_REGION": REGION,
                      "RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE": "true"}
        # rclone's S3 SDK refuses a custom CA bundle on its HTTP transport; the server is plain HTTP.
        rclone_env.pop("AWS_CA_BUNDLE", None)
        aws = str(ROOT / ".venv-bench/bin/aws")
        results = []

        def run(name: str, command, environment, kind: str) -> dict:
            """Runs one copier; its time is the process's wall time, or the time the command
            reports itself (the replicator's driver, to leave out cargo's start-up)."""
            before = garage.requests()
            started = time.monotonic()
            done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True,
                                  text=True)
            seconds = time.monotonic() - started
            if done.returncode != 0:
                sys.exit(f"{name} failed ({done.returncode}): {done.stderr[-2000:]}")
            if kind.startswith("ours"):
                seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
            requests = garage.requests() - before
            row = {"name": name, "kind": kind, "seconds": seconds,
                   "objects_per_second": OBJECTS / seconds, "requests_per_object": requests / OBJECTS}
            results.append(row)
            print(json.dumps(row), flush=True)
            return row

        def fresh(name: str) -> str:
            return garage.bucket(f"bench-{name}", key_id)

        # The raw ceiling: nothing but CopyObject, at the best concurrency.
        for concurrency in (16, 64, 128, 256):
            destination = fresh(f"raw-{concurrency}")
            row = bench_binary(env, "raw-copy", source, destination, str(concurrency))
            results.append({"name": f"raw CopyObject loop, concurrency {concurrency}", "kind": "raw",
                            "seconds": row["seconds"], "objects_per_second": row["objects_per_second"],
                            "requests_per_object": 1.0})
            print(json.dumps(results[-1]), flush=True)

        cargo_bench = ["cargo", "bench", "--quiet", "--bench", "backfill", "--", "backfill"]
        for concurrency in (16, 64, 128, 256):
            destination = fresh(f"ours-{concurrency}")
            run(f"s3-replicator backfill, BACKFILL_CONCURRENCY {concurrency}",
                [*cargo_bench, source, destination, str(concurrency)], env, "ours")
        run("s3-replicator backfill, no-op re-sync",
            [*cargo_bench, source, "bench-ours-64", "64"], env, "ours-noop")

        destination = fresh("aws-default")
        aws_config.write_text("[default]\n")
        run("aws s3 sync (defaults)", [aws, "s3", "sync", f"s3://{source}", f"s3://{destination}",
                                       "--only-show-errors"], aws_env, "aws")
        run("aws s3 sync (defaults), no-op re-sync",
            [aws, "s3", "sync", f"s3://{source}", f"s3://{destination}", "--only-show-errors"],
            aws_env, "aws-noop")
        destination = fresh("aws-64")
        aws_config.write_text("[default]\ns3 =\n  max_concurrent_requests = 64\n")
        run("aws s3 sync, max_concurrent_requests 64",
            [aws, "s3", "sync", f"s3://{source}", f"s3://{destination}", "--only-show-errors"],
            aws_env, "aws")

        for transfers in (4, 64):
            destination = fresh(f"rclone-{transfers}")
            command = ["rclone", "sync", f"garage:{source}", f"garage:{destination}", "--transfers",
                       str(transfers), "--checkers", str(max(8, transfers))]
            run(f"rclone sync --transfers {transfers} (server-side copy)", command, rclone_env,
                "rclone")
        run("rclone sync --transfers 64, no-op re-sync", command, rclone_env, "rclone-noop")

        load_after = os.getloadavg()
        best = lambda kind: max((r for r in results if r["kind"] == kind),  # noqa: E731
                                key=lambda r: r["objects_per_second"])
        ours, raw = best("ours"), best("raw")
        aws_default = next(r for r in results if r["name"] == "aws s3 sync (defaults)")
        rclone_best = best("rclone")
        print(f"\nload average after: {load_after[0]:.2f}\n")
        print("| run | seconds | objects/s | S3 requests/object |")
        print("|---|---:|---:|---:|")
        for row in results:
            print(f"| {row['name']} | {row['seconds']:.2f} | {row['objects_per_second']:.0f} | "
                  f"{row['requests_per_object']:.4f} |")
        print()
        print(f"- best backfill: {ours['name']} — {ours['objects_per_second']:.0f} objects/s")
        print(f"- vs aws s3 sync at its defaults: {ours['objects_per_second'] / aws_default['objects_per_second']:.1f}x (target >= 3x)")
        print(f"- vs rclone at its best ({rclone_best['name']}): {ours['objects_per_second'] / rclone_best['objects_per_second']:.1f}x (target >= 1.5x)")
        print(f"- vs the raw CopyObject ceiling ({raw['name']}): {100 * ours['objects_per_second'] / raw['objects_per_second']:.0f}% (target >= 80%)")
        noop = next(r for r in results if r["kind"] == "ours-noop")
        print(f"- no-op re-sync: {noop['requests_per_object']:.4f} requests/object (target <= 0.003)")
        return 0
    finally:
        garage.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

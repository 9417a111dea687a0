"""Backfill benchmark, on one local Garage server (a production S3 store) with the same data:

1. the ceiling: the replicator's backfill at its default settings against a raw loop of nothing
   but CopyObject calls swept over concurrencies, repeated (medians and spread), without and with
   an S3-like latency added to every request by the driver's proxy;
2. (BENCH_TOOLS=1) the backfill against `aws s3 sync` and rclone.

Prints Markdown tables of objects/s, Garage's CPU time per object (the server's share of the
two cores all of it runs on) and S3 requests per object (from Garage's own request counters).
Run through scripts/bench-backfill.sh, which installs the tools.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_common import REGION, ROOT, Garage, LatencyProxy, driver, garage_bench

OBJECTS = int(os.environ.get("BENCH_OBJECTS", "100000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "6"))
TOOLS = os.environ.get("BENCH_TOOLS", "0") == "1"
LATENCY_MS = (20, 60)
BACKFILL = "s3-replicator backfill, default settings"


class Buckets:
    """Fresh destination buckets, one per run."""

    def __init__(self, garage: Garage, key_id: str):
        self.garage, self.key_id, self.count = garage, key_id, 0

    def fresh(self, name: str) -> str:
        self.count += 1
        return self.garage.bucket(f"bench-{self.count}-{name}", self.key_id)


def ceiling(env: dict, garage: Garage, source: str, buckets: Buckets, label: str,
            sweep: list[int]) -> list[dict]:
    """The raw loop over `sweep` and the default backfill, REPEATS times, interleaved: in order
    in even repeats, in reverse in odd ones. Garage slows as the runs fill it, so a fixed order
    would favour the runs that come first; over an even number of repeats every run takes the
    same mean place."""
    runs: list[int | None] = [*sweep, None]
    rows = []
    for repeat in range(REPEATS):
        for concurrency in runs if repeat % 2 == 0 else runs[::-1]:
            cpu_before = garage.cpu_seconds()
            if concurrency is None:
                run = driver(env, "backfill", source, buckets.fresh("ours"), "default")
                if run["listed"] != OBJECTS:
                    sys.exit(f"the backfill listed {run['listed']} of {OBJECTS} objects")
                name, kind = BACKFILL, "ours"
            else:
                run = driver(env, "raw-copy", source, buckets.fresh(f"raw-{concurrency}"),
                             str(concurrency))
                name, kind = f"raw CopyObject loop, concurrency {concurrency}", "raw"
            garage_ms = (garage.cpu_seconds() - cpu_before) * 1000 / OBJECTS
            rows.append({"latency": label, "name": name, "kind": kind, "repeat": repeat,
                         "garage_cpu_ms_per_object": garage_ms, **run})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def ceiling_table(rows: list[dict]) -> None:
    """Medians and spread per run; then the backfill's median over the best raw loop's median,
    and beside it the backfill over that raw loop's run in the same repeat (adjacent runs, so
    the server's drift from run to run weighs less), median and spread."""
    print("| latency added | run | median objects/s | min–max | Garage CPU ms/object (median) "
          "| concurrency at the end (median) |")
    print("|---|---|---:|---:|---:|---:|")
    for label in dict.fromkeys(r["latency"] for r in rows):
        names = dict.fromkeys(r["name"] for r in rows if r["latency"] == label)
        medians = {}
        for name in names:
            runs = [r for r in rows if r["latency"] == label and r["name"] == name]
            rates = [r["objects_per_second"] for r in runs]
            medians[name] = statistics.median(rates)
            reached = (f"{statistics.median(r['concurrency'] for r in runs):.0f} (highest "
                       f"{max(r['highest_concurrency'] for r in runs)})"
                       if "concurrency" in runs[0] else "")
            garage_ms = statistics.median(r["garage_cpu_ms_per_object"] for r in runs)
            print(f"| {label} | {name} | {medians[name]:.0f} | {min(rates):.0f}–{max(rates):.0f} "
                  f"| {garage_ms:.3f} | {reached} |")
        best = max((n for n in names if n.startswith("raw")), key=medians.get)
        ours = medians[BACKFILL]
        at = best.rsplit(" ", 1)[-1]
        rate = {(r["name"], r["repeat"]): r["objects_per_second"]
                for r in rows if r["latency"] == label}
        paired = [100 * rate[(BACKFILL, k)] / rate[(best, k)] for k in range(REPEATS)]
        print(f"| {label} | **backfill at default settings / best raw ({at})** | "
              f"**{100 * ours / medians[best]:.1f}%** | per repeat {min(paired):.0f}–"
              f"{max(paired):.0f}%, median {statistics.median(paired):.1f}% | | |")


def tools(env: dict, garage: Garage, keys: dict, source: str, buckets: Buckets,
          workdir: Path) -> list[dict]:
    """`aws s3 sync` and rclone on the same data, with the replicator's requests per object."""
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
    rows = []

    def run(name: str, command, environment, kind: str) -> None:
        before = garage.requests()
        started = time.monotonic()
        done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
        seconds = time.monotonic() - started
        if done.returncode != 0:
            sys.exit(f"{name} failed ({done.returncode}): {done.stderr[-2000:]}")
        if kind.startswith("ours"):
            seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        rows.append({"name": name, "seconds": seconds, "objects_per_second": OBJECTS / seconds,
                     "requests_per_object": (garage.requests() - before) / OBJECTS})
        print(json.dumps(rows[-1]), flush=True)

    ours = buckets.fresh("ours")
    backfill = ["cargo", "bench", "--quiet", "--bench", "driver", "--", "backfill", source]
    run(BACKFILL, [*backfill, ours, "default"], env, "ours")
    run("s3-replicator backfill, no-op re-sync", [*backfill, ours, "default"], env, "ours-noop")
    destination = buckets.fresh("aws")
    aws_config.write_text("[default]\n")
    sync = [aws, "s3", "sync", f"s3://{source}", f"s3://{destination}", "--only-show-errors"]
    run("aws s3 sync (defaults)", sync, aws_env, "aws")
    run("aws s3 sync (defaults), no-op re-sync", sync, aws_env, "aws-noop")
    for transfers in (4, 64):
        destination = buckets.fresh(f"rclone-{transfers}")
        command = ["rclone", "sync", f"garage:{source}", f"garage:{destination}", "--transfers",
                   str(transfers), "--checkers", str(max(8, transfers))]
        run(f"rclone sync --transfers {transfers} (server-side copy)", command, rclone_env,
            "rclone")
    run("rclone sync --transfers 64, no-op re-sync", command, rclone_env, "rclone-noop")
    print("\n| run | seconds | objects/s | S3 requests/object |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['name']} | {row['seconds']:.2f} | {row['objects_per_second']:.0f} | "
              f"{row['requests_per_object']:.4f} |")
    return rows


def main() -> int:
    with garage_bench("s3-replicator-bench-") as (workdir, garage, keys, env):
        buckets = Buckets(garage, keys["AWS_ACCESS_KEY_ID"])
        source = garage.bucket("bench-source", keys["AWS_ACCESS_KEY_ID"])
        print(f"Garage {garage.cli('--version').strip()} at {garage.endpoint}; {OBJECTS} objects; "
              f"{REPEATS} repeats; {os.cpu_count()} CPUs; load average before: "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        print(json.dumps(driver(env, "populate", source, str(OBJECTS))), flush=True)
        rows = ceiling(env, garage, source, buckets, "none", [64, 128, 256, 512])
        proxy = LatencyProxy(env, garage.endpoint, *LATENCY_MS)
        try:
            slow = {**env, "AWS_ENDPOINT_URL": proxy.endpoint}
            # Up to 1,000 in flight, the most BACKFILL_CONCURRENCY allows a function (Lambda
            # gives it 1,024 open files, one connection per copy).
            rows += ceiling(slow, garage, source, buckets, f"{LATENCY_MS[0]}–{LATENCY_MS[1]} ms",
                            [128, 256, 512, 1000])
        finally:
            proxy.stop()
        print(f"\nload average after: {os.getloadavg()[0]:.2f}\n")
        ceiling_table(rows)
        if TOOLS:
            tools(env, garage, keys, source, buckets, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

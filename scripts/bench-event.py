"""Event-mode benchmark: the release binary, as its own process under a minimal Lambda Runtime
API, replicates N new small objects delivered as SQS batches of S3 notifications, from one
bucket of a local Garage server (a production S3 store) to another.

For each batch size (10 and 100), without and with an S3-like latency added to every request by
the driver's proxy, it reports objects per second, S3 requests per object by API (Garage's own
counters), the function's CPU time per object and peak RSS (read from /proc, so the harness is
not counted), and from them Lambda GB-seconds and the cost per million objects at Lambda's
published prices. It also measures the binary's init (process start to its first Runtime API
`next` call) and its size. Run through scripts/bench-event.sh.
"""

from __future__ import annotations

import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench_common import ROOT, LatencyProxy, driver, driver_lines, garage_bench

OBJECTS = int(os.environ.get("BENCH_OBJECTS", "5000"))
BINARY = ROOT / "target/release/s3-replicator"
LATENCY_MS = (20, 60)
CLOCK_TICK = os.sysconf("SC_CLK_TCK")

# Lambda's published prices (us-east-1, https://aws.amazon.com/lambda/pricing/), S3's
# (https://aws.amazon.com/s3/pricing/, S3 Standard) and SQS's (standard queue).
LAMBDA_GB_SECOND = {"arm64": 0.0000133334, "x86_64": 0.0000166667}
LAMBDA_REQUEST = 0.20 / 1e6
S3_TIER1 = 0.005 / 1000   # PUT, COPY, POST, LIST
S3_TIER2 = 0.0004 / 1000  # GET, HEAD and the rest
SQS_REQUEST = 0.40 / 1e6
FULL_VCPU_MB = 1769       # Lambda gives one full vCPU at 1,769 MB, and CPU in proportion
MEMORY_SETTINGS = [("template default, 256 MB arm64", 256, "arm64"), ("128 MB arm64", 128, "arm64")]


class RuntimeApi:
    """The Lambda Runtime API, as much as the function uses: it hands out the queued events one
    at a time (`next`) and collects the responses, timing each invocation."""

    def __init__(self):
        self.events: queue.Queue = queue.Queue()
        self.responses: queue.Queue = queue.Queue()
        self.first_next: float | None = None
        self.pid: int | None = None
        self.cpu_at_init = 0.0
        self.handed_out: dict[str, float] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if api.first_next is None:
                    api.first_next = time.monotonic()
                    if api.pid:
                        api.cpu_at_init = proc_cpu_seconds(api.pid)
                request_id, body = api.events.get()
                payload = body.encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                deadline = int((time.time() + 120) * 1000)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                 "arn:aws:lambda:us-east-1:111111111111:function:s3-replicator")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                api.handed_out[request_id] = time.monotonic()
                self.wfile.write(payload)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length).decode()
                finished = time.monotonic()
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                parts = self.path.split("/")
                if "invocation" in parts:
                    request_id, kind = parts[-2], parts[-1]
                    started = api.handed_out.pop(request_id)
                    api.responses.put((kind, body, finished - started))
                else:
                    api.responses.put(("init-error", body, 0.0))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def proc_peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def function_env(env: dict, endpoint: str, source: str, destination: str) -> dict:
    return {**env, "AWS_ENDPOINT_URL": endpoint,
            "SOURCE_BUCKET": source, "DESTINATION_BUCKET": destination,
            "DESTINATION_ACL": "none", "S3_FORCE_PATH_STYLE": "true",
            "AWS_LAMBDA_FUNCTION_NAME": "s3-replicator", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_LOG_GROUP_NAME": "bench",
            "AWS_LAMBDA_LOG_STREAM_NAME": "bench", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"}


def run_function(env: dict, events: list[str], log: Path) -> dict:
    """Starts the binary under a fresh Runtime API, feeds it `events` one invocation at a time,
    and returns what it cost."""
    api = RuntimeApi()
    environment = {**env, "AWS_LAMBDA_RUNTIME_API": api.address}
    for number, event in enumerate(events):
        api.events.put((f"request-{number}", event))
    started = time.monotonic()
    with open(log, "w") as output:
        process = subprocess.Popen([str(BINARY)], env=environment, stdout=output, stderr=output)
    api.pid = process.pid
    try:
        durations, failures = [], 0
        for _ in events:
            kind, body, seconds = api.responses.get(timeout=600)
            if kind != "response":
                sys.exit(f"invocation failed ({kind}): {body[:2000]}")
            failures += len(json.loads(body).get("batchItemFailures", []))
            durations.append(seconds)
        cpu = proc_cpu_seconds(process.pid) - api.cpu_at_init
        rss = proc_peak_rss_mib(process.pid)
        init = api.first_next - started
        return {"durations": durations, "cpu": cpu, "rss_mib": rss, "init_seconds": init,
                "failures": failures}
    finally:
        process.terminate()
        process.wait(timeout=30)
        api.stop()


def measure_init(env: dict, times: int) -> list[float]:
    """Process start to the first Runtime API `next` call, `times` times."""
    inits = []
    for _ in range(times):
        api = RuntimeApi()
        started = time.monotonic()
        process = subprocess.Popen([str(BINARY)], env={**env, "AWS_LAMBDA_RUNTIME_API": api.address},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while api.first_next is None and process.poll() is None:
            time.sleep(0.001)
        if api.first_next is None:
            sys.exit(f"the function exited ({process.returncode}) before asking for an event")
        inits.append(api.first_next - started)
        process.terminate()
        process.wait(timeout=30)
        api.stop()
    return inits


def cost(row: dict, memory_mb: int, arch: str) -> dict:
    """Lambda and S3 cost per million objects at `memory_mb`. The duration of each invocation is
    stretched for Lambda's CPU share (memory / 1,769 MB of a vCPU): conservatively, as if all of
    its CPU time ran on that share and none of it overlapped with waiting on S3."""
    stretch = max(1.0, FULL_VCPU_MB / memory_mb) - 1.0
    cpu_per_invocation = row["cpu"] / len(row["durations"])
    billed = [max(0.001, round(d + cpu_per_invocation * stretch, 3)) for d in row["durations"]]
    gb_seconds = sum(billed) * memory_mb / 1024
    per_million = 1e6 / OBJECTS
    lambda_usd = (gb_seconds * LAMBDA_GB_SECOND[arch] + len(billed) * LAMBDA_REQUEST) * per_million
    s3_usd = sum(count * (S3_TIER2 if api in ("HeadObject", "GetObject") else S3_TIER1)
                 for api, count in row["requests"].items()) * per_million
    # S3 sends one message per object; Lambda's poller receives and deletes them in batches.
    sqs_usd = (1 + 2 / row["batch"]) * SQS_REQUEST * 1e6
    return {"gb_seconds_per_million": gb_seconds * per_million, "lambda": lambda_usd,
            "s3": s3_usd, "sqs": sqs_usd, "mean_billed_ms": 1000 * statistics.mean(billed)}


def main() -> int:
    with garage_bench("s3-replicator-bench-event-") as (workdir, garage, keys, env):
        source = garage.bucket("event-source", keys["AWS_ACCESS_KEY_ID"])
        subprocess.run(["cargo", "build", "--quiet", "--release", "--bin", "s3-replicator"],
                       cwd=ROOT, check=True)
        print(f"Garage {garage.cli('--version').strip()}; {OBJECTS} objects; {os.cpu_count()} "
              f"CPUs; load average before: {os.getloadavg()[0]:.2f}", flush=True)
        print(json.dumps(driver(env, "populate", source, str(OBJECTS))), flush=True)
        proxy = LatencyProxy(env, garage.endpoint, *LATENCY_MS)
        try:
            rows = []
            for label, endpoint in (("none", garage.endpoint),
                                    (f"{LATENCY_MS[0]}–{LATENCY_MS[1]} ms", proxy.endpoint)):
                for batch in (10, 100):
                    rows.append(measure(env, garage, workdir, source, label, endpoint, batch,
                                        len(rows)))
        finally:
            proxy.stop()
        inits = measure_init(function_env(env, garage.endpoint, source, "event-0"), 10)
        report(rows, inits)
    return 0


def measure(env: dict, garage, workdir: Path, source: str, label: str, endpoint: str, batch: int,
            number: int) -> dict:
    """One configuration: all objects through the function, at `batch` per invocation."""
    events = driver_lines(env, "events", source, str(batch))
    destination = garage.bucket(f"event-{number}", env["AWS_ACCESS_KEY_ID"])
    before = garage.requests_by_api()
    started = time.monotonic()
    run = run_function(function_env(env, endpoint, source, destination), events,
                       workdir / f"function-{number}.log")
    wall = time.monotonic() - started - run["init_seconds"]
    after = garage.requests_by_api()
    requests = {api: after[api] - before.get(api, 0) for api in after
                if after[api] != before.get(api, 0)}
    copied = driver(env, "count", destination)["objects"]
    if copied != OBJECTS or run["failures"]:
        sys.exit(f"{copied} of {OBJECTS} objects in B, {run['failures']} failures")
    row = {"latency": label, "batch": batch, "invocations": len(events),
           "objects_per_second": OBJECTS / wall, "requests": requests,
           "cpu_ms_per_object": 1000 * run["cpu"] / OBJECTS, **run}
    print(json.dumps({k: v for k, v in row.items() if k != "durations"}), flush=True)
    return row


def report(rows: list[dict], inits: list[float]) -> None:
    print(f"\nload average after: {os.getloadavg()[0]:.2f}\n")
    print("| latency added | batch | invocations | objects/s | S3 requests/object (by API) "
          "| CPU ms/object | peak RSS MiB | mean invocation ms |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for row in rows:
        by_api = ", ".join(f"{api} {count / OBJECTS:.4f}"
                           for api, count in sorted(row["requests"].items()))
        total = sum(row["requests"].values()) / OBJECTS
        print(f"| {row['latency']} | {row['batch']} | {row['invocations']} | "
              f"{row['objects_per_second']:.0f} | {total:.4f} ({by_api}) | "
              f"{row['cpu_ms_per_object']:.3f} | {row['rss_mib']:.1f} | "
              f"{1000 * statistics.mean(row['durations']):.1f} |")
    print("\nCost per million objects (Lambda us-east-1 prices: arm64 $0.0000133334/GB-s, "
          "$0.20 per million requests; S3 Standard: $0.005 per 1,000 COPY/PUT/LIST, $0.0004 per "
          "1,000 GET/HEAD; SQS $0.40 per million requests):\n")
    print("| latency added | batch | memory | mean billed ms | GB-s | Lambda USD | S3 USD | "
          "SQS USD | total USD |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        for name, memory, arch in MEMORY_SETTINGS:
            c = cost(row, memory, arch)
            print(f"| {row['latency']} | {row['batch']} | {name} | {c['mean_billed_ms']:.1f} | "
                  f"{c['gb_seconds_per_million']:.1f} | {c['lambda']:.2f} | {c['s3']:.2f} | "
                  f"{c['sqs']:.2f} | {c['lambda'] + c['s3'] + c['sqs']:.2f} |")
    size = BINARY.stat().st_size / 2**20
    arm = ROOT / "target/lambda-package/bootstrap-arm64"
    arm_size = f", arm64 {arm.stat().st_size / 2**20:.1f} MiB" if arm.exists() else ""
    print(f"\nInit (process start to the first `next`), 10 starts: median "
          f"{1000 * statistics.median(inits):.1f} ms, min {1000 * min(inits):.1f}, max "
          f"{1000 * max(inits):.1f}; release binary x86_64 {size:.1f} MiB{arm_size}")


if __name__ == "__main__":
    sys.exit(main())

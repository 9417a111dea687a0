"""What the benchmarks share: a local Garage server (a production S3 store) with its request
counters, and the benchmark driver (benches/driver.rs)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
        return sum(self.requests_by_api().values())

    def requests_by_api(self) -> dict[str, int]:
        """S3 API requests Garage has served, by API (its `api_endpoint` label)."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}/metrics",
                                         headers={"Authorization": f"Bearer {self.metrics_token}"})
        text = urllib.request.urlopen(request).read().decode()
        counts: dict[str, int] = {}
        for line in text.splitlines():
            if line.startswith("api_s3_request_counter"):
                api = re.search(r'api_endpoint="([^"]*)"', line)
                name = api.group(1) if api else "?"
                counts[name] = counts.get(name, 0) + int(float(line.rsplit(" ", 1)[1]))
        return counts

    def cpu_seconds(self) -> float:
        """The CPU time (user and system) the server has used so far, from /proc."""
        fields = (Path("/proc") / str(self.process.pid) / "stat").read_text().rsplit(")", 1)[1]
        user, system = fields.split()[11:13]
        return (int(user) + int(system)) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)



def driver(env: dict, *args: str) -> dict:
    """Runs one command of the benchmark driver; returns its last JSON line."""
    run = subprocess.run(["cargo", "bench", "--quiet", "--bench", "driver", "--", *args],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"driver {' '.join(args)} failed ({run.returncode}): {run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def driver_lines(env: dict, *args: str) -> list[str]:
    """Runs one command of the benchmark driver; returns its output lines."""
    return subprocess.run(["cargo", "bench", "--quiet", "--bench", "driver", "--", *args],
                          cwd=ROOT, env=env, check=True, capture_output=True,
                          text=True).stdout.splitlines()


class LatencyProxy:
    """The driver's latency proxy in front of `upstream`, in its own process."""

    def __init__(self, env: dict, upstream: str, least_ms: int, most_ms: int,
                 untagged: bool = False):
        self.process = subprocess.Popen(
            ["cargo", "bench", "--quiet", "--bench", "driver", "--", "latency-proxy", upstream,
             str(least_ms), str(most_ms), *(["untagged"] if untagged else [])], cwd=ROOT,
            env=env, stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.endpoint = json.loads(self.process.stdout.readline())["endpoint"]

    def stop(self) -> None:
        # Cargo does not pass a signal on to the program it runs: end its whole group.
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


def garage_env(garage: Garage, keys: dict) -> dict:
    return {**os.environ, **keys, "AWS_REGION": REGION, "AWS_ENDPOINT_URL": garage.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true"}


@contextlib.contextmanager
def garage_bench(prefix: str):
    """A Garage server started in a fresh work directory, with its keys, the environment that
    reaches it, and the driver built: `(workdir, garage, keys, env)`. Stopped and removed on exit."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    garage = Garage(workdir)
    try:
        keys = garage.setup()
        env = garage_env(garage, keys)
        subprocess.run(["cargo", "bench", "--quiet", "--bench", "driver", "--no-run"],
                       cwd=ROOT, env=env, check=True)
        yield workdir, garage, keys, env
    finally:
        garage.stop()
        shutil.rmtree(workdir, ignore_errors=True)

"""Helpers the local scripts share: start the S3 emulator, call its control API, build clients
for its accounts, start a server on a free port, and stop what was started."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[1]


def start_emulator() -> tuple[subprocess.Popen, dict]:
    """Starts tests/emulator/server.py; returns the process and its first line (endpoint, keys)."""
    process = subprocess.Popen([sys.executable, str(ROOT / "tests/emulator/server.py")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return process, json.loads(process.stdout.readline())


def harness(endpoint: str, route: str, body: dict | None = None, query: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    suffix = "?" + urllib.parse.urlencode(query) if query else ""
    request = urllib.request.Request(f"{endpoint}/_harness/{route}{suffix}", data=data,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def s3(endpoint: str, keys: dict):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=keys["access_key_id"],
                        aws_secret_access_key=keys["secret_access_key"],
                        aws_session_token=keys.get("session_token"),
                        config=Config(s3={"addressing_style": "path"}, read_timeout=600))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_listening(command, **popen_args) -> tuple[subprocess.Popen, int]:
    """Starts `command(port)` on a free port and waits until it listens. Another process can take
    the port first; the command then exits, and another port is tried."""
    for _ in range(5):
        port = free_port()
        process = subprocess.Popen(command(port), **popen_args)
        if wait_for_port(port, process):
            return process, port
        process.wait()
    sys.exit(f"{command(0)[0]} exited five times before listening")


def wait_for_port(port: int, process: subprocess.Popen) -> bool:
    """Waits until `port` accepts connections (True) or `process` exits first (False). The bound
    only keeps a hung process from hanging the script: a start takes well under a second."""
    deadline = time.monotonic() + 600
    while process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=10).close()
            return process.poll() is None
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                sys.exit(f"{process.args[0]} neither listened on port {port} nor exited in 10 minutes")
            time.sleep(0.2)
    return False


def stop(processes: list[subprocess.Popen]) -> None:
    """Stops processes in reverse order of starting, killing any that do not stop in 10 s."""
    for process in reversed(processes):
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()

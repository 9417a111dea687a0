"""Scans the logs of a whole test run for what must never be logged: the secret keys and session
tokens the emulator handed out (every emulator of the run appends them to SECRETS_FILE), presigned
URLs, signed Authorization headers, and whole event payloads. Exits 1 naming each finding.

usage: scan-logs.py LOG_DIR SECRETS_FILE
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# What a log line may never hold besides the secrets themselves.
FORBIDDEN = [
    ("presigned URL", re.compile(r"X-Amz-(Signature|Credential|Security-Token)=", re.I)),
    ("signed Authorization header", re.compile(r"AWS4-HMAC-SHA256\s+Credential=", re.I)),
    # Field names that appear only in a serialized S3, SQS, SNS or EventBridge payload.
    ("whole payload", re.compile(r'"(Records|receiptHandle|eventSource|detail-type|TopicArn)"\s*:')),
]

# The function's own log lines: proof that the logs scanned are the ones the function wrote.
FUNCTION_LINE = re.compile(r'outcome="?copied|"outcome":"copied"')


def findings(text: str, secrets: set[str]) -> list[tuple[int, str]]:
    """(line number, what) for every forbidden thing in `text`."""
    found = []

    def line_of(offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    for secret in secrets:
        start = text.find(secret)
        while start != -1:
            found.append((line_of(start), f"a secret ({secret[:4]}…)"))
            start = text.find(secret, start + 1)
    for what, pattern in FORBIDDEN:
        for match in pattern.finditer(text):
            found.append((line_of(match.start()), what))
    return sorted(found)


def self_test() -> None:
    """The scan finds what it looks for: a check that cannot fail checks nothing."""
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    planted = {
        f"INFO copied key=a.txt credentials={secret}": "a secret",
        "GET https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab":
            "presigned URL",
        "authorization: AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/s3/aws4_request":
            "signed Authorization header",
        'ERROR refused payload={"Records":[{"eventSource":"aws:s3"}]}': "whole payload",
    }
    for line, expected in planted.items():
        found = [what for _, what in findings(line, {secret})]
        assert any(what.startswith(expected) for what in found), (line, found)
    clean = 'INFO object copied key="a.txt" outcome="copied" error=unrecognised payload: Records is empty'
    assert findings(clean, {secret}) == [], findings(clean, {secret})


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    log_dir, secrets_file = Path(sys.argv[1]), Path(sys.argv[2])
    self_test()
    secrets, emulators = set(), set()
    if secrets_file.exists():
        for line in secrets_file.read_text().splitlines():
            entry = json.loads(line)
            secrets.add(entry["secret"])
            emulators.add(entry["pid"])
    if not secrets:
        print(f"log scan: no secrets recorded in {secrets_file}: nothing to scan for", file=sys.stderr)
        return 1
    files = sorted(path for path in log_dir.rglob("*") if path.is_file())
    lines = size = function_lines = 0
    problems = []
    for path in files:
        text = path.read_text(errors="replace")
        lines += text.count("\n")
        size += len(text)
        function_lines += len(FUNCTION_LINE.findall(text))
        for number, what in findings(text, secrets):
            problems.append(f"{path}:{number}: {what}")
    if function_lines == 0:
        print(f"log scan: no log line of a copy in {log_dir}: the function's logs were not captured",
              file=sys.stderr)
        return 1
    summary = (f"{len(files)} files, {lines:,} lines, {size / 1e6:.1f} MB, {function_lines:,} copy "
               f"lines; {len(secrets)} secret keys and session tokens from {len(emulators)} emulators")
    if problems:
        print(f"log scan: {summary}; {len(problems)} findings:", file=sys.stderr)
        for problem in problems[:50]:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"log scan: {summary}; no secret, presigned URL, signature or payload found")
    return 0


if __name__ == "__main__":
    sys.exit(main())

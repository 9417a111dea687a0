"""A local S3 for the tests and the demo: moto in server mode behind an authorization layer that
applies AWS's rules to S3 requests across accounts, plus a small control API under /_harness/
that builds the two-account world.

Stock moto accepts any S3 request from any identity: it ignores bucket policies' Allow
statements and principals, and never checks read access on a copy's source. The layer here
evaluates, for every S3 request, the caller's identity policies (from moto's IAM) and the bucket's
policy (from moto's S3) the way AWS does:

- an explicit Deny in either wins;
- within one account, an Allow in either suffices;
- across accounts, both must allow;
- a copy also needs s3:GetObject on its source (and s3:GetObjectTagging when tags are copied);
- reading a missing object without s3:ListBucket is 403, not 404;
- under BucketOwnerEnforced (the default) ACLs other than bucket-owner-full-control are refused,
  and the bucket owner cannot read an object that another account owns unless it was granted.

Objects encrypted with a KMS key (SSE-KMS or DSSE-KMS, requested or by the bucket's default) get
ETags that are not MD5 digests of their bytes, random on every write, as on S3, where moto gives
them MD5s; multipart ones keep their `-N` suffix. A multipart upload completed without a checksum
algorithm reports the CRC64NVME checksum S3 adds by default.

It also enforces x-amz-copy-source-if-match, which moto ignores, and models archived objects
where moto does not: UploadPartCopy from S3 Glacier Flexible Retrieval or Deep Archive is refused
(ObjectNotInActiveTierError) as CopyObject is; objects in an Intelligent-Tiering archive tier
(harness route archive-tier) refuse reads and copies until restored; and a restore can be held in
progress (hold-restore, then complete-restore), where moto restores at once. ListMultipartUploads
reports each upload's initiator and start time and encodes keys when asked, and ListParts answers
with S3's ListPartsResult document (moto names it ListPartsResponse), as S3 does.

Usage: server.py [--port N] [--template PATH]. Prints one JSON line ({"endpoint", "accounts"...})
once it serves, and exits when its standard input closes (so it never outlives its parent).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import logging
import os
import re
import sys
import threading
import urllib.parse
import uuid
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import moto
import yaml
from botocore.config import Config as BotoConfig
from moto.core.responses import ActionResult
from moto.iam.access_control import CreateAccessKeyFailure, IAMPolicy, create_access_key
from moto.iam.models import get_account_id_from
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.s3 import notifications as s3_notifications
from moto.s3.models import FakeDeleteMarker, FakeKey, FakeMultipart, S3Backend, s3_backends
from moto.s3.responses import S3Response
from moto.utilities.tagging_service import TaggingService
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

# The layer reaches into moto's IAM, STS and S3 models; it is written against this version.
MOTO_VERSION = "5.2.5"
if moto.__version__ != MOTO_VERSION:
    sys.exit(f"tests/emulator needs moto {MOTO_VERSION}, found {moto.__version__}")

ACCOUNTS = {"a": "111111111111", "b": "222222222222"}
# What the function's setup subscribes to (the template's NotificationEvents output).
NOTIFICATION_EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*",
                       "s3:ObjectRestore:Completed", "s3:ObjectTagging:*"]
# The longest a held request waits for its release (a test that failed before releasing it).
HOLD_LIMIT_SECONDS = 600

# moto keeps object tags in one store per account, keyed by the object's bucket and key; a
# copy made by another account's principal then files the replica's tags under the caller's
# account, where the bucket owner never sees them. Bucket names are global, so one store for
# all accounts is what S3 behaves like.
_SHARED_OBJECT_TAGS = TaggingService()
_s3_backend_init = S3Backend.__init__


def _s3_backend_with_shared_tags(self, *args, **kwargs):
    _s3_backend_init(self, *args, **kwargs)
    self.tagger = _SHARED_OBJECT_TAGS


S3Backend.__init__ = _s3_backend_with_shared_tags

# S3 documents that an object encrypted with SSE-KMS or DSSE-KMS has an ETag that is not an MD5
# digest of its data; moto computes MD5s for every object. Every write makes a new object here,
# so each gets a random ETag of S3's shape (32 hex digits, plus `-N` for N parts).
KMS_ENCRYPTIONS = ("aws:kms", "aws:kms:dsse")
_fake_key_init = FakeKey.__init__


def _fake_key_with_kms_etag(self, *args, **kwargs):
    _fake_key_init(self, *args, **kwargs)
    if self.encryption in KMS_ENCRYPTIONS:
        parts = (self._etag or "").strip('"').partition("-")[2]
        self._etag = uuid.uuid4().hex + (f"-{parts}" if parts else "")


FakeKey.__init__ = _fake_key_with_kms_etag

# S3 stores a CRC64NVME checksum of the whole object on every object uploaded without one, multipart
# uploads included, and reports it. moto computes that value for a completed multipart upload but
# files it without an algorithm, so it never reports it.
_complete_multipart_upload = S3Backend.complete_multipart_upload


def _complete_with_default_checksum(self, *args, **kwargs):
    key = _complete_multipart_upload(self, *args, **kwargs)
    if key is not None and key.checksum_value and not key.checksum_algorithm:
        key.checksum_algorithm = "CRC64NVME"
    return key


S3Backend.complete_multipart_upload = _complete_with_default_checksum

# S3 sends s3:ObjectTagging:Put for PutObjectTagging only; moto sends it too for every upload and
# copy that sets tags (and for every multipart upload completed), besides their ObjectCreated.
_TAGGING_REQUEST = threading.local()
_send_event = s3_notifications.send_event
_put_object_tagging_request = S3Response.put_object_tagging


def _send_event_as_s3(account_id, event_name, bucket, key):
    if (event_name == s3_notifications.S3NotificationEvent.OBJECT_TAGGING_PUT_EVENT
            and not getattr(_TAGGING_REQUEST, "active", False)):
        return
    _send_event(account_id, event_name, bucket, key)


def _put_object_tagging_as_s3(self, *args, **kwargs):
    _TAGGING_REQUEST.active = True
    try:
        return _put_object_tagging_request(self, *args, **kwargs)
    finally:
        _TAGGING_REQUEST.active = False


s3_notifications.send_event = _send_event_as_s3
S3Response.put_object_tagging = _put_object_tagging_as_s3

# S3's ListMultipartUploads reports who started each upload (a role's session as
# arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION) and when, and encodes keys when asked for
# EncodingType=url; moto reports one fixed user and date for every upload, and raw keys. The
# authorizing layer names the principal of the request being served.
_REQUEST_PRINCIPAL = threading.local()
_fake_multipart_init = FakeMultipart.__init__


def _fake_multipart_with_initiator(self, *args, **kwargs):
    _fake_multipart_init(self, *args, **kwargs)
    self.initiator = getattr(_REQUEST_PRINCIPAL, "arn", None) or f"arn:aws:iam::{self.account_id}:root"
    self.initiated = datetime.datetime.now(datetime.timezone.utc)


def _list_multipart_uploads_as_s3(self):
    prefix = self.querystring.get("prefix", [""])[0]
    encode = self.querystring.get("encoding-type", [None])[0] == "url"
    uploads = [
        {
            "Key": urllib.parse.quote(upload.key_name) if encode else upload.key_name,
            "UploadId": upload.id,
            "Initiator": {"ID": upload.initiator,
                          "DisplayName": upload.initiator.rsplit(":", 1)[-1]},
            "Owner": {"ID": upload.account_id, "DisplayName": upload.account_id},
            "StorageClass": "STANDARD",
            "Initiated": upload.initiated.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }
        for upload in self.backend.list_multipart_uploads(self.bucket_name).values()
        if upload.key_name.startswith(prefix)
    ]
    result = {"Bucket": self.bucket_name, "KeyMarker": "", "UploadIdMarker": "",
              "MaxUploads": 1000, "IsTruncated": False, "Uploads": uploads}
    if encode:
        result["EncodingType"] = "url"
    self.data["Action"] = "ListMultipartUploads"
    return self.serialized(ActionResult(result))


FakeMultipart.__init__ = _fake_multipart_with_initiator
S3Response.list_multipart_uploads = _list_multipart_uploads_as_s3

# S3 answers ListParts with a ListPartsResult document; moto names its root ListPartsResponse,
# which clients that check the root element (the Rust SDK) refuse.
_list_parts = S3Response.list_parts


def _list_parts_as_s3(self):
    status, headers, body = _list_parts(self)
    if isinstance(body, bytes):
        body = body.replace(b"ListPartsResponse", b"ListPartsResult")
    elif isinstance(body, str):
        body = body.replace("ListPartsResponse", "ListPartsResult")
    return status, headers, body


S3Response.list_parts = _list_parts_as_s3
REGION = "us-east-1"
PARTITION = "aws"
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# Policy evaluation


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def wildcard_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern
    )
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.fullmatch(regex, value, flags) is not None


@dataclass
class Principal:
    account: str
    arn: str
    # Every name a policy's Principal element may use for this caller.
    names: set[str]
    policies: list[dict]


STRING_OPERATORS = {
    "StringEquals": lambda want, have: want == have,
    "StringNotEquals": lambda want, have: want == have,
    "StringEqualsIgnoreCase": lambda want, have: want.lower() == have.lower(),
    "StringLike": lambda want, have: wildcard_match(want, have),
    "StringNotLike": lambda want, have: wildcard_match(want, have),
    "ArnEquals": lambda want, have: want == have,
    "ArnLike": lambda want, have: wildcard_match(want, have),
    "ArnNotEquals": lambda want, have: want == have,
    "ArnNotLike": lambda want, have: wildcard_match(want, have),
    "Bool": lambda want, have: str(want).lower() == str(have).lower(),
}
NEGATED = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


def conditions_hold(conditions: dict, context: dict) -> bool:
    for operator, entries in conditions.items():
        if_exists = operator.endswith("IfExists")
        base = operator[: -len("IfExists")] if if_exists else operator
        if base not in STRING_OPERATORS:
            raise ValueError(f"condition operator {operator} is not supported by the emulator")
        compare = STRING_OPERATORS[base]
        for key, wanted in entries.items():
            have = context.get(key.lower())
            if have is None:
                if if_exists or base in NEGATED:
                    continue
                return False
            matched = any(compare(str(w), str(have)) for w in as_list(wanted))
            if matched == (base in NEGATED):
                return False
    return True


def statement_applies(statement, action, resource, principal, context, resource_policy) -> bool:
    if "NotAction" in statement:
        if any(wildcard_match(p, action, True) for p in as_list(statement["NotAction"])):
            return False
    elif not any(wildcard_match(p, action, True) for p in as_list(statement.get("Action"))):
        return False
    if "NotResource" in statement:
        if any(wildcard_match(p, resource) for p in as_list(statement["NotResource"])):
            return False
    elif "Resource" in statement:
        if not any(wildcard_match(p, resource) for p in as_list(statement["Resource"])):
            return False
    if resource_policy:
        if "NotPrincipal" in statement:
            raise ValueError("NotPrincipal is not supported by the emulator")
        element = statement.get("Principal")
        if element != "*":
            names = as_list((element or {}).get("AWS")) if isinstance(element, dict) else []
            if not any(n == "*" or n in principal.names for n in names):
                return False
    return conditions_hold(statement.get("Condition") or {}, context)


def evaluate(policies, action, resource, principal, context, resource_policy=False):
    """'Deny', 'Allow' or None (no statement applies)."""
    allowed = False
    for document in policies:
        for statement in as_list(document.get("Statement")):
            if statement_applies(statement, action, resource, principal, context, resource_policy):
                if statement.get("Effect") == "Deny":
                    return "Deny"
                allowed = True
    return "Allow" if allowed else None


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass
class Check:
    """One permission a request needs."""

    action: str
    bucket: str
    key: str | None = None
    # Reading an object: subject to the owner and missing-object rules.
    object_read: bool = False

    @property
    def resource(self) -> str:
        if self.key is None:
            return f"arn:aws:s3:::{self.bucket}"
        return f"arn:aws:s3:::{self.bucket}/{self.key}"


BUCKET_SUBRESOURCES = {
    "GET": {
        "policy": "s3:GetBucketPolicy", "location": "s3:GetBucketLocation",
        "versioning": "s3:GetBucketVersioning", "acl": "s3:GetBucketAcl",
        "tagging": "s3:GetBucketTagging", "notification": "s3:GetBucketNotification",
        "uploads": "s3:ListBucketMultipartUploads", "versions": "s3:ListBucketVersions",
        "ownershipControls": "s3:GetBucketOwnershipControls",
        "encryption": "s3:GetEncryptionConfiguration",
        "lifecycle": "s3:GetLifecycleConfiguration", "cors": "s3:GetBucketCORS",
        "publicAccessBlock": "s3:GetBucketPublicAccessBlock",
    },
    "PUT": {
        "policy": "s3:PutBucketPolicy", "versioning": "s3:PutBucketVersioning",
        "acl": "s3:PutBucketAcl", "tagging": "s3:PutBucketTagging",
        "notification": "s3:PutBucketNotification",
        "ownershipControls": "s3:PutBucketOwnershipControls",
        "encryption": "s3:PutEncryptionConfiguration",
        "lifecycle": "s3:PutLifecycleConfiguration", "cors": "s3:PutBucketCORS",
        "publicAccessBlock": "s3:PutBucketPublicAccessBlock",
    },
    "DELETE": {
        "policy": "s3:DeleteBucketPolicy", "tagging": "s3:PutBucketTagging",
        "ownershipControls": "s3:PutBucketOwnershipControls",
        "lifecycle": "s3:PutLifecycleConfiguration", "cors": "s3:PutBucketCORS",
        "encryption": "s3:PutEncryptionConfiguration",
    },
}


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    parsed = urllib.parse.urlparse(value)
    path = urllib.parse.unquote(parsed.path)
    path = path[1:] if path.startswith("/") else path
    bucket, _, key = path.partition("/")
    version = urllib.parse.parse_qs(parsed.query).get("versionId", [None])[0]
    return bucket, key, version


def required_checks(method, bucket, key, query, headers) -> list[Check]:
    if not bucket:
        return [Check("s3:ListAllMyBuckets", "*")]
    if key is None:
        if method == "POST" and "delete" in query:
            return [Check("s3:DeleteObject", bucket, "*")]
        for sub, action in BUCKET_SUBRESOURCES.get(method, {}).items():
            if sub in query:
                return [Check(action, bucket)]
        if method in ("GET", "HEAD"):
            return [Check("s3:ListBucket", bucket)]
        if method == "PUT":
            return [Check("s3:CreateBucket", bucket)]
        if method == "DELETE":
            return [Check("s3:DeleteBucket", bucket)]
        raise Refused(400, "NotImplemented", f"emulator: unmapped bucket request {method}")

    version = "versionId" in query
    if method in ("GET", "HEAD"):
        if "tagging" in query:
            return [Check("s3:GetObjectVersionTagging" if version else "s3:GetObjectTagging", bucket, key, True)]
        if "acl" in query:
            return [Check("s3:GetObjectAcl", bucket, key, True)]
        if "uploadId" in query:
            return [Check("s3:ListMultipartUploadParts", bucket, key)]
        if "attributes" in query:
            return [Check("s3:GetObject", bucket, key, True), Check("s3:GetObjectAttributes", bucket, key, True)]
        return [Check("s3:GetObjectVersion" if version else "s3:GetObject", bucket, key, True)]
    if method == "DELETE":
        if "tagging" in query:
            return [Check("s3:DeleteObjectTagging", bucket, key)]
        if "uploadId" in query:
            return [Check("s3:AbortMultipartUpload", bucket, key)]
        return [Check("s3:DeleteObjectVersion" if version else "s3:DeleteObject", bucket, key)]
    if method == "POST":
        if "restore" in query:
            return [Check("s3:RestoreObject", bucket, key)]
        checks = [Check("s3:PutObject", bucket, key)]
        return checks + acl_and_tagging_checks(bucket, key, headers)
    if method == "PUT":
        if "tagging" in query:
            return [Check("s3:PutObjectTagging", bucket, key)]
        if "acl" in query:
            return [Check("s3:PutObjectAcl", bucket, key)]
        checks = [Check("s3:PutObject", bucket, key)]
        copy_source = headers.get("x-amz-copy-source")
        if copy_source:
            src_bucket, src_key, src_version = parse_copy_source(copy_source)
            action = "s3:GetObjectVersion" if src_version else "s3:GetObject"
            checks.append(Check(action, src_bucket, src_key, True))
            is_part = "uploadId" in query
            if not is_part and headers.get("x-amz-tagging-directive", "COPY").upper() == "COPY":
                checks.append(Check("s3:GetObjectTagging", src_bucket, src_key, True))
        return checks + acl_and_tagging_checks(bucket, key, headers)
    raise Refused(400, "NotImplemented", f"emulator: unmapped object request {method}")


def acl_and_tagging_checks(bucket, key, headers) -> list[Check]:
    checks = []
    if "x-amz-acl" in headers or any(h.startswith("x-amz-grant-") for h in headers):
        checks.append(Check("s3:PutObjectAcl", bucket, key))
    if "x-amz-tagging" in headers or headers.get("x-amz-tagging-directive", "").upper() == "REPLACE":
        checks.append(Check("s3:PutObjectTagging", bucket, key))
    return checks


# ---------------------------------------------------------------------------------------------
# The layer


def notifications_overlap(body: bytes) -> bool:
    """Whether two notifications of a NotificationConfiguration document share an event type
    (`s3:ObjectCreated:*` covers `s3:ObjectCreated:Put`) for keys both filters match (one prefix
    starts with the other, one suffix ends with the other)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return False

    def local(tag):
        return tag.rsplit("}", 1)[-1]

    entries = []
    for configuration in root:
        if local(configuration.tag) not in ("QueueConfiguration", "TopicConfiguration",
                                            "CloudFunctionConfiguration"):
            continue
        events, rules = [], {"prefix": "", "suffix": ""}
        for element in configuration.iter():
            if local(element.tag) == "Event":
                events.append(element.text or "")
            if local(element.tag) == "FilterRule":
                fields = {local(child.tag): child.text or "" for child in element}
                rules[fields.get("Name", "").lower()] = fields.get("Value", "")
        entries.append((events, rules["prefix"], rules["suffix"]))

    def events_overlap(a, b):
        return a == b or (a.endswith("*") and b.startswith(a[:-1])) or \
            (b.endswith("*") and a.startswith(b[:-1]))

    for i, (events_a, prefix_a, suffix_a) in enumerate(entries):
        for events_b, prefix_b, suffix_b in entries[i + 1:]:
            keys = (prefix_a.startswith(prefix_b) or prefix_b.startswith(prefix_a)) and \
                (suffix_a.endswith(suffix_b) or suffix_b.endswith(suffix_a))
            if keys and any(events_overlap(a, b) for a in events_a for b in events_b):
                return True
    return False


def find_bucket(name):
    entry = s3_backends.bucket_accounts.get(name)
    if not entry:
        return None, None
    partition, account = entry
    backend = s3_backends[account][partition]
    return account, backend.buckets.get(name)


def object_exists(bucket_obj, key) -> bool:
    return bucket_obj is not None and bucket_obj.keys.get(key) is not None


def bucket_ownership(bucket_obj) -> str:
    return (bucket_obj.ownership_rule if bucket_obj is not None else None) or "BucketOwnerEnforced"


@dataclass
class ObjectOwner:
    account: str
    bucket_owner_full_control: bool


@dataclass
class State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    owners: dict = field(default_factory=dict)  # (bucket, key) -> ObjectOwner
    denials: int = 0
    # Faults to answer instead of S3: dicts with path_contains, method, status, code, count.
    faults: list = field(default_factory=list)
    # Asynchronous Lambda invocations received, in order: (function ARN, payload, caller role name).
    invocations: list = field(default_factory=list)
    # What to do just before a matching request is served: dicts with method, path_contains,
    # query_contains, skip, count, and put {account, bucket, key, body} (a write to make first)
    # or hold (the name of a hold: the request waits until the harness releases it).
    triggers: list = field(default_factory=list)
    # Holds by name: {"arrived": Event set when the request is held, "release": Event}.
    holds: dict = field(default_factory=dict)
    # Objects in an Intelligent-Tiering archive tier (moto has none): (bucket, key) -> tier.
    archive_tiers: dict = field(default_factory=dict)
    # Objects whose next RestoreObject stays in progress until the harness completes it (moto
    # restores at once): (bucket, key) -> "held" before the request, "ongoing" after it.
    held_restores: dict = field(default_factory=dict)
    # Requests seen, by bucket and S3 operation (for tests that count what the function sent).
    operations: dict = field(default_factory=dict)

    def take_trigger(self, method: str, raw_path: str, query: str):
        with self.lock:
            for trigger in self.triggers:
                if (trigger["count"] > 0 and trigger["method"] == method
                        and trigger["path_contains"] in raw_path
                        and trigger.get("query_contains", "") in query):
                    if trigger.get("skip", 0) > 0:
                        trigger["skip"] -= 1
                        continue
                    trigger["count"] -= 1
                    return trigger
        return None

    def take_fault(self, method: str, raw_path: str, query: str):
        with self.lock:
            for fault in self.faults:
                if fault["count"] > 0 and fault["path_contains"] in raw_path and (
                        fault.get("method") in (None, method)) and (
                        fault.get("query_contains", "") in query):
                    fault["count"] -= 1
                    return fault
        return None


def resolve_principal(access_key: str, token: str | None) -> Principal:
    account = get_account_id_from(access_key)
    headers = {"X-Amz-Security-Token": token} if token else {}
    try:
        key = create_access_key(account, PARTITION, access_key, headers)
    except CreateAccessKeyFailure as failure:
        if failure.reason == "InvalidToken":
            raise Refused(403, "InvalidToken", "The provided token is malformed or otherwise invalid.")
        raise Refused(403, "InvalidAccessKeyId",
                      "The AWS Access Key Id you provided does not exist in our records.")
    policies = [IAMPolicy(p)._policy_json for p in key.collect_policies()]
    names = {account, f"arn:aws:iam::{account}:root", key.arn}
    if hasattr(key, "_owner_role_name"):
        names.add(f"arn:aws:iam::{account}:role/{key._owner_role_name}")
    return Principal(account=account, arn=key.arn, names=names, policies=policies)


class AuthorizingApp:
    def __init__(self, app, state: State, harness):
        self.app = app
        self.state = state
        self.harness = harness
        # The Harness, for writes made by triggers; set once the server's address is known.
        self.control = None

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_harness/"):
            return self.harness(Request(environ))(environ, start_response)
        credential = self._credential(environ)
        if credential is not None and credential[2] == "lambda":
            invoke = re.fullmatch(r"/2015-03-31/functions/([^/]+)/invocations", path)
            if invoke:
                return self._invoke(environ, credential, urllib.parse.unquote(invoke.group(1)))(
                    environ, start_response)
        if credential is None or credential[2] != "s3":
            return self.app(environ, start_response)
        _REQUEST_PRINCIPAL.arn = None
        request = Request(environ)
        raw_path = urllib.parse.unquote(environ.get("RAW_URI") or environ.get("PATH_INFO", ""))
        trigger = self.state.take_trigger(request.method, raw_path, environ.get("QUERY_STRING", ""))
        if trigger is not None and "hold" in trigger:
            hold = trigger["hold"]
            hold["arrived"].set()
            # A safety limit far beyond any test, so that a test that fails before releasing
            # does not leave a server thread waiting forever.
            hold["release"].wait(timeout=HOLD_LIMIT_SECONDS)
        elif trigger is not None:
            put = trigger["put"]
            self.control.put_object(put["account"], put["bucket"], put["key"], put["body"])
        self._count(request, raw_path, environ.get("QUERY_STRING", ""))
        fault = self.state.take_fault(request.method, raw_path, environ.get("QUERY_STRING", ""))
        if fault is not None:
            refused = Refused(fault["status"], fault["code"], "injected by the emulator's harness")
            return self._error(refused, request)(environ, start_response)
        try:
            record = self._authorize(environ, request, credential)
        except Refused as refused:
            if refused.code == "AccessDenied":
                with self.state.lock:
                    self.state.denials += 1
            return self._error(refused, request)(environ, start_response)
        try:
            answered = self._archive_rules(request, raw_path, environ.get("QUERY_STRING", ""))
            self._missing_key_rules(request, raw_path, environ.get("QUERY_STRING", ""))
        except Refused as refused:
            return self._error(refused, request)(environ, start_response)
        if answered is not None:
            return answered(environ, start_response)
        if self._is_get_versioning(request, raw_path, environ.get("QUERY_STRING", "")):
            return self._versioning_as_s3(environ, start_response)
        notification_bucket = self._notification_bucket(raw_path, environ.get("QUERY_STRING", ""))
        if notification_bucket and request.method == "PUT":
            try:
                self._refuse_overlapping_notifications(environ)
            except Refused as refused:
                return self._error(refused, request)(environ, start_response)
        elif notification_bucket and request.method == "GET":
            return self._notification_as_s3(notification_bucket, environ, start_response)
        if record is None:
            return self.app(environ, start_response)

        def recording_start_response(status, headers, exc_info=None):
            if status.startswith("200"):
                record(dict((k.lower(), v) for k, v in headers))
            return start_response(status, headers, exc_info)

        return self.app(environ, recording_start_response)

    @staticmethod
    def _missing_key_rules(request: Request, raw_path: str, query_string: str):
        """S3 answers 404 NoSuchKey to DeleteObjectTagging on a key that does not exist; moto
        fails with a 500."""
        query = urllib.parse.parse_qs(query_string, keep_blank_values=True)
        bucket, _, key = raw_path.split("?", 1)[0][1:].partition("/")
        if request.method != "DELETE" or "tagging" not in query or not key:
            return
        _, bucket_obj = find_bucket(bucket)
        if bucket_obj is not None and not object_exists(bucket_obj, key):
            raise Refused(404, "NoSuchKey", "The specified key does not exist.")

    @staticmethod
    def _is_get_versioning(request: Request, raw_path: str, query_string: str) -> bool:
        path = raw_path.split("?", 1)[0][1:]
        query = urllib.parse.parse_qs(query_string, keep_blank_values=True)
        return request.method == "GET" and "versioning" in query and "/" not in path.strip("/")

    @staticmethod
    def _notification_bucket(raw_path: str, query_string: str) -> str | None:
        path = raw_path.split("?", 1)[0][1:].strip("/")
        query = urllib.parse.parse_qs(query_string, keep_blank_values=True)
        return path if "notification" in query and path and "/" not in path else None

    @staticmethod
    def _refuse_overlapping_notifications(environ):
        """S3 refuses a notification configuration in which two notifications share an event type
        and their prefix and suffix filters overlap; moto stores it."""
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        if notifications_overlap(body):
            raise Refused(400, "InvalidArgument", "Configurations overlap. Configurations on the "
                          "same bucket cannot share a common event type.")

    def _notification_as_s3(self, bucket: str, environ, start_response):
        """GetBucketNotificationConfiguration as S3 answers it: with the EventBridgeConfiguration
        element when the bucket sends its events to EventBridge (moto leaves it out, so a
        read-modify-write of the configuration would turn EventBridge off)."""
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        body = b"".join(self.app(environ, capture))
        _, bucket_obj = find_bucket(bucket)
        config = getattr(bucket_obj, "notification_configuration", None)
        if captured["status"].startswith("200") and config is not None \
                and config.event_bridge is not None:
            element = b"<EventBridgeConfiguration></EventBridgeConfiguration>"
            if b"</NotificationConfiguration>" in body:
                body = body.replace(b"</NotificationConfiguration>",
                                    element + b"</NotificationConfiguration>")
            else:
                body = re.sub(rb"<NotificationConfiguration([^>]*)/>",
                              rb"<NotificationConfiguration\1>" + element + rb"</NotificationConfiguration>",
                              body)
        headers = [(k, str(len(body)) if k.lower() == "content-length" else v)
                   for k, v in captured["headers"]]
        start_response(captured["status"], headers)
        return [body]

    def _versioning_as_s3(self, environ, start_response):
        """GetBucketVersioning as S3 answers it: moto names the document's root element
        GetBucketVersioningResponse, where S3 (and the SDKs that parse it) use
        VersioningConfiguration."""
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        body = b"".join(self.app(environ, capture)).replace(
            b"GetBucketVersioningResponse", b"VersioningConfiguration")
        headers = [(k, str(len(body)) if k.lower() == "content-length" else v)
                   for k, v in captured["headers"]]
        start_response(captured["status"], headers)
        return [body]

    def _count(self, request: Request, raw_path: str, query_string: str):
        """Counts the request by bucket and S3 operation (only those tests ask about)."""
        bucket = raw_path.split("?", 1)[0][1:].partition("/")[0]
        query = urllib.parse.parse_qs(query_string, keep_blank_values=True)
        if request.method == "PUT" and "partNumber" in query and "x-amz-copy-source" in request.headers:
            operation = "UploadPartCopy"
        elif request.method == "PUT" and "x-amz-copy-source" in request.headers:
            operation = "CopyObject"
        else:
            names = sorted(name for name in query if name != "x-id")
            operation = f"{request.method} {'?' + '&'.join(names) if names else ''}".strip()
        with self.state.lock:
            counts = self.state.operations.setdefault(bucket, {})
            counts[operation] = counts.get(operation, 0) + 1

    def _archive_rules(self, request: Request, raw_path: str, query_string: str):
        """What S3 does with archived objects where moto does not: UploadPartCopy from S3 Glacier
        Flexible Retrieval or Deep Archive is refused like CopyObject; an object in an
        Intelligent-Tiering archive tier cannot be read or copied until restored; and a restore
        can be held in progress. Returns a response to send instead of moto's, or None."""
        query = urllib.parse.parse_qs(query_string, keep_blank_values=True)
        bucket, _, key = raw_path.split("?", 1)[0][1:].partition("/")
        copy_source = request.headers.get("x-amz-copy-source")
        if request.method == "PUT" and copy_source:
            src_bucket, src_key, _ = parse_copy_source(copy_source)
            if self._archived(src_bucket, src_key):
                raise Refused(403, "ObjectNotInActiveTierError",
                              "The source object of the COPY operation is not in the active tier "
                              "and is only stored in Amazon Glacier.")
            return None
        if not key:
            return None
        if request.method == "GET" and not query and self._archived(bucket, key):
            raise Refused(403, "InvalidObjectState",
                          "The operation is not valid for the object's storage class")
        if request.method == "POST" and "restore" in query:
            with self.state.lock:
                held = self.state.held_restores.get((bucket, key))
                if held is not None:
                    self.state.held_restores[(bucket, key)] = "ongoing"
                    return Response("", status=202)
                tier = self.state.archive_tiers.pop((bucket, key), None)
            if tier is not None:
                return Response("", status=202)
        return None

    def _archived(self, bucket: str, key: str) -> bool:
        """Whether the current object is archived and not restored."""
        with self.state.lock:
            if (bucket, key) in self.state.archive_tiers:
                return True
            if self.state.held_restores.get((bucket, key)) == "ongoing":
                return True
        _, bucket_obj = find_bucket(bucket)
        current = bucket_obj.keys.get(key) if bucket_obj is not None else None
        if current is None or current.storage_class not in ("GLACIER", "DEEP_ARCHIVE"):
            return False
        return 'ongoing-request="false"' not in current.response_dict.get("x-amz-restore", "")

    def _invoke(self, environ, credential, function):
        """Lambda's Invoke API for asynchronous and dry-run invocations: authorized against the
        caller's identity policy, then queued for the test to deliver (moto would need Docker to
        run a function, and the function under test is this project's own); a dry run is only
        authorized."""
        request = Request(environ)
        try:
            principal = resolve_principal(credential[0], environ.get("HTTP_X_AMZ_SECURITY_TOKEN"))
            arn = function if function.startswith("arn:") else (
                f"arn:aws:lambda:{credential[1]}:{principal.account}:function:{function}")
            allowed = evaluate(principal.policies, "lambda:InvokeFunction", arn, principal, {})
            if allowed != "Allow" or arn.split(":")[4] != principal.account:
                raise Refused(403, "AccessDeniedException",
                              f"User: {principal.arn} is not authorized to perform: "
                              f"lambda:InvokeFunction on resource: {arn}")
            invocation_type = request.headers.get("X-Amz-Invocation-Type")
            if invocation_type == "DryRun":
                # Like Lambda: authorized, then nothing runs.
                return Response("", status=204)
            if invocation_type != "Event":
                raise Refused(400, "InvalidParameterValueException",
                              "the emulator takes asynchronous (Event) and DryRun invocations only")
        except Refused as refused:
            body = json.dumps({"Type": "User", "message": refused.message})
            return Response(body, status=refused.status, content_type="application/json",
                            headers={"x-amzn-ErrorType": refused.code})
        payload = json.loads(request.get_data() or b"null")
        role = principal.arn.split(":assumed-role/", 1)[-1].split("/", 1)[0]
        with self.state.lock:
            self.state.invocations.append((arn, payload, role))
        return Response("", status=202)

    @staticmethod
    def _credential(environ):
        auth = environ.get("HTTP_AUTHORIZATION", "")
        match = re.search(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/([^/]+)/aws4_request", auth)
        if match:
            return match.group(1), match.group(2), match.group(3)
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        presigned = query.get("X-Amz-Credential", [""])[0].split("/")
        if len(presigned) == 5:
            return presigned[0], presigned[2], presigned[3]
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            return None
        return ("", REGION, "s3") if _looks_like_s3(environ) else None

    def _authorize(self, environ, request: Request, credential):
        access_key = credential[0]
        if not access_key:
            raise Refused(403, "AccessDenied", "Anonymous access is not allowed by the emulator.")
        token = environ.get("HTTP_X_AMZ_SECURITY_TOKEN") or request.args.get("X-Amz-Security-Token")
        principal = resolve_principal(access_key, token)
        _REQUEST_PRINCIPAL.arn = principal.arn

        raw_path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        raw_path = raw_path.split("?", 1)[0]
        bucket, slash, raw_key = raw_path[1:].partition("/")
        bucket = urllib.parse.unquote(bucket)
        key = urllib.parse.unquote(raw_key) if slash and raw_key else None
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        headers = {k.lower(): v for k, v in request.headers.items()}
        method = request.method

        self._check_region(bucket, key, method, query, credential[1])
        self._check_expected_owner(bucket, headers.get("x-amz-expected-bucket-owner"))
        if "x-amz-copy-source" in headers:
            self._check_expected_owner(parse_copy_source(headers["x-amz-copy-source"])[0],
                                       headers.get("x-amz-source-expected-bucket-owner"))
        checks = required_checks(method, bucket, key, query, headers)
        context = {
            "aws:securetransport": "false",
            "aws:principalarn": principal.arn,
            "aws:principalaccount": principal.account,
            "s3:x-amz-acl": headers.get("x-amz-acl"),
            "s3:x-amz-server-side-encryption": headers.get("x-amz-server-side-encryption"),
            "s3:x-amz-server-side-encryption-aws-kms-key-id": headers.get(
                "x-amz-server-side-encryption-aws-kms-key-id"),
            "s3:prefix": query.get("prefix", [None])[0],
        }
        for check in checks:
            self._check(principal, check, context)
        return self._enforce_object_rules(principal, method, bucket, key, query, headers)

    @staticmethod
    def _check_expected_owner(bucket, expected):
        """S3 refuses a request whose expected bucket owner is not the bucket's account."""
        if not expected or not bucket:
            return
        account, _ = find_bucket(bucket)
        if account is not None and account != expected:
            raise Refused(403, "AccessDenied",
                          f"Access Denied (bucket {bucket} is not owned by account {expected})")

    @staticmethod
    def _check_region(bucket, key, method, query, signed_region):
        """A request signed for another region than the bucket's is redirected, as S3 does."""
        if not bucket or (method == "PUT" and key is None and not query):
            return
        _, bucket_obj = find_bucket(bucket)
        if bucket_obj is None or bucket_obj.region_name == signed_region:
            return
        raise Refused(301, "PermanentRedirect",
                      "The bucket you are attempting to access must be addressed using the "
                      "specified endpoint. Please send all future requests to this endpoint.",
                      {"x-amz-bucket-region": bucket_obj.region_name})

    def _check(self, principal: Principal, check: Check, context):
        bucket_account, bucket_obj = find_bucket(check.bucket)
        bucket_policy = []
        if bucket_obj is not None and bucket_obj.policy:
            bucket_policy = [json.loads(bucket_obj.policy)]
        identity = evaluate(principal.policies, check.action, check.resource, principal, context)
        resource = evaluate(bucket_policy, check.action, check.resource, principal, context, True)
        owner = bucket_account or principal.account
        if identity == "Deny":
            self._deny(principal, check, "with an explicit deny in an identity-based policy")
        if resource == "Deny":
            self._deny(principal, check, "with an explicit deny in a resource-based policy")
        if owner == principal.account:
            if identity != "Allow" and resource != "Allow":
                self._deny(principal, check, f"because no identity-based policy allows the {check.action} action")
        else:
            if identity != "Allow":
                self._deny(principal, check, f"because no identity-based policy allows the {check.action} action")
            if resource != "Allow":
                self._deny(principal, check, f"because no resource-based policy allows the {check.action} action")
        if not check.object_read or bucket_obj is None:
            return
        if not object_exists(bucket_obj, check.key):
            listing = Check("s3:ListBucket", check.bucket)
            try:
                self._check(principal, listing, context)
            except Refused:
                raise Refused(403, "AccessDenied",
                              f"Access Denied (the object does not exist and {principal.arn} may not s3:ListBucket {listing.resource})")
            return
        if bucket_ownership(bucket_obj) == "BucketOwnerEnforced" or principal.account != owner:
            return
        with self.state.lock:
            recorded = self.state.owners.get((check.bucket, check.key))
        if recorded and recorded.account != owner and not recorded.bucket_owner_full_control:
            raise Refused(403, "AccessDenied",
                          f"Access Denied: object {check.resource} is owned by account {recorded.account}, "
                          f"which did not grant the bucket owner access")

    def _deny(self, principal, check, why):
        raise Refused(403, "AccessDenied",
                      f'User: {principal.arn} is not authorized to perform: {check.action} on resource: '
                      f'"{check.resource}" {why}')

    def _enforce_object_rules(self, principal, method, bucket, key, query, headers):
        """Checks ACL and conditional-copy rules, and returns a callback that records the new
        object's owner once moto has stored it (or None when the request writes no object)."""
        if key is None:
            return None
        bucket_account, bucket_obj = find_bucket(bucket)
        if bucket_obj is None:
            return None
        if method == "DELETE" and not query:
            def forget(_headers):
                with self.state.lock:
                    self.state.owners.pop((bucket, key), None)
            return forget
        writes = (method == "PUT" and not ({"tagging", "acl", "partNumber"} & query.keys())) or (
            method == "POST" and ("uploads" in query or "uploadId" in query))
        if not writes:
            copy_source = headers.get("x-amz-copy-source")
            if method == "PUT" and copy_source and "partNumber" in query:
                self._check_copy_condition(copy_source, headers)
            return None
        acl = headers.get("x-amz-acl")
        grants = any(h.startswith("x-amz-grant-") for h in headers)
        ownership = bucket_ownership(bucket_obj)
        if ownership == "BucketOwnerEnforced" and (grants or (acl and acl != "bucket-owner-full-control")):
            raise Refused(400, "AccessControlListNotSupported", "The bucket does not allow ACLs")
        copy_source = headers.get("x-amz-copy-source")
        if method == "PUT" and copy_source:
            self._check_copy_condition(copy_source, headers)
        bofc = acl == "bucket-owner-full-control"
        if ownership == "BucketOwnerEnforced" or (ownership == "BucketOwnerPreferred" and bofc):
            owner = ObjectOwner(bucket_account, True)
        else:
            owner = ObjectOwner(principal.account, bofc)

        if method == "POST" and "uploads" in query:
            def remember_upload(_headers):
                return None
            # The upload id is in the response body; CompleteMultipartUpload is recorded with the
            # owner of the request that completes it, which the writer also sends.
            return remember_upload

        def record(_headers):
            with self.state.lock:
                self.state.owners[(bucket, key)] = owner
        return record

    @staticmethod
    def _check_copy_condition(copy_source, headers):
        src_bucket, src_key, src_version = parse_copy_source(copy_source)
        _, bucket_obj = find_bucket(src_bucket)
        current = bucket_obj.keys.get(src_key) if bucket_obj is not None else None
        if src_version is None and isinstance(current, FakeDeleteMarker):
            # S3: the current version is a delete marker, so the key has no object (moto fails
            # with a 500).
            raise Refused(404, "NoSuchKey", "The specified key does not exist.")
        wanted = headers.get("x-amz-copy-source-if-match")
        if not wanted:
            return
        if current is not None and current.etag.strip('"') != wanted.strip('"'):
            raise Refused(412, "PreconditionFailed",
                          "At least one of the pre-conditions you specified did not hold")

    @staticmethod
    def _error(refused: Refused, request: Request):
        body = "" if request.method == "HEAD" else (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{refused.code}</Code><Message>{_xml_escape(refused.message)}</Message>"
            f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
        )
        response = Response(body, status=refused.status, content_type="application/xml")
        for name, value in refused.headers.items():
            response.headers[name] = value
        return response


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _looks_like_s3(environ) -> bool:
    # Unsigned requests: treat as S3 unless they are clearly another service's.
    return "HTTP_X_AMZ_TARGET" not in environ and environ.get("CONTENT_TYPE", "").find("x-www-form-urlencoded") < 0


# ---------------------------------------------------------------------------------------------
# The template's policies


class CfnLoader(yaml.SafeLoader):
    pass


def _cfn_constructor(name):
    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if name == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        key = "Ref" if name == "Ref" else f"Fn::{name}"
        return {key: value}
    return construct


for _tag in ["Ref", "Sub", "GetAtt", "If", "Equals", "Not", "And", "Or", "Join", "Select", "Condition",
             "FindInMap"]:
    CfnLoader.add_constructor(f"!{_tag}", _cfn_constructor(_tag))

NO_VALUE = object()


class TemplateRenderer:
    """Resolves the intrinsic functions a policy in template.yaml uses, for given parameters."""

    def __init__(self, template: dict, parameters: dict, account: str):
        self.template = template
        self.values = {
            name: spec.get("Default", "") for name, spec in template.get("Parameters", {}).items()
        }
        unknown = set(parameters) - set(self.values)
        if unknown:
            raise ValueError(f"unknown template parameters: {sorted(unknown)}")
        self.values.update(parameters)
        self.values.update({"AWS::Partition": PARTITION, "AWS::AccountId": account,
                            "AWS::Region": REGION, "AWS::StackName": "s3-replicator"})
        self.account = account
        self.attributes = {}
        self.conditions = {}
        for name, expression in template.get("Conditions", {}).items():
            self.conditions[name] = bool(self.resolve(expression))

    def ref(self, name):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.values:
            return self.values[name]
        if name in self.template.get("Resources", {}):
            return name
        raise ValueError(f"cannot resolve Ref {name}")

    def sub_name(self, name, names):
        if name in names:
            return names[name]
        if "." in name:
            return self.resolve({"Fn::GetAtt": name.split(".", 1)})
        return self.ref(name)

    def resolve(self, node):
        if isinstance(node, list):
            return [v for v in (self.resolve(n) for n in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::Sub":
                text, names = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(self.sub_name(m.group(1), names)), text)
            if key == "Fn::GetAtt":
                resource, attribute = arg
                if (resource, attribute) in self.attributes:
                    return self.attributes[(resource, attribute)]
                if attribute == "Arn":
                    kind = self.template["Resources"][resource]["Type"].split("::")[1].lower()
                    return f"arn:aws:{kind}:{REGION}:{self.account}:{resource}"
                return f"{resource}.{attribute}"
            if key == "Fn::If":
                name, then, otherwise = arg
                return self.resolve(then if self.conditions[name] else otherwise)
            if key == "Fn::Equals":
                left, right = (self.resolve(a) for a in arg)
                return left == right
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::Join":
                separator, items = arg
                return separator.join(str(i) for i in self.resolve(items))
            if key == "Fn::FindInMap":
                mapping, first, second = (str(self.resolve(a)) for a in arg)
                return self.template["Mappings"][mapping][first][second]
            if key == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if key == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if key == "Fn::Condition":
                return self.conditions[arg]
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v is not NO_VALUE}


def function_role_policies(parameters: dict, template_path: Path, account: str) -> dict:
    """The function role's identity policies, as template.yaml grants them for `parameters`:
    the role's inline policies and the (conditional) role policies attached to it."""
    template = yaml.load(template_path.read_text(), Loader=CfnLoader)
    renderer = TemplateRenderer(template, parameters, account)
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    if len(functions) != 1:
        raise ValueError(f"template.yaml should define one function, found {len(functions)}")
    # The function's role is the one its Role property names (`!GetAtt <role>.Arn`).
    role_name = functions[0]["Properties"]["Role"]["Fn::GetAtt"][0]
    role = template["Resources"][role_name]
    policies = {
        policy["PolicyName"]: policy["PolicyDocument"]
        for policy in renderer.resolve(role["Properties"]["Policies"])
    }
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::RolePolicy":
            continue
        if resource["Properties"]["RoleName"] != {"Ref": role_name}:
            continue
        if "Condition" in resource and not renderer.conditions[resource["Condition"]]:
            continue
        properties = resource["Properties"]
        policies[properties["PolicyName"]] = renderer.resolve(properties["PolicyDocument"])
    return policies


def template_outputs(parameters: dict, template_path: Path, account: str, role_arn: str) -> dict:
    """template.yaml's outputs for `parameters`, with the role's ARN as given."""
    template = yaml.load(template_path.read_text(), Loader=CfnLoader)
    renderer = TemplateRenderer(template, parameters, account)
    renderer.attributes[("ReplicatorRole", "Arn")] = role_arn
    outputs = {}
    for name, output in template.get("Outputs", {}).items():
        if "Condition" in output and not renderer.conditions[output["Condition"]]:
            continue
        outputs[name] = renderer.resolve(output["Value"])
    return outputs


def parameter_errors(template: dict, parameters: dict) -> list:
    """What CloudFormation would refuse in `parameters` before creating anything: values outside
    a parameter's AllowedPattern, AllowedValues, MinValue or MaxValue, and Rules assertions that
    do not hold."""
    errors = []
    for name, spec in template.get("Parameters", {}).items():
        value = str(parameters.get(name, spec.get("Default", "")))
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            errors.append(f"{name}: {spec.get('ConstraintDescription', spec['AllowedPattern'])}")
        if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
            errors.append(f"{name}: one of {spec['AllowedValues']}")
        if spec.get("Type") == "Number":
            number = float(value) if re.fullmatch(r"-?[0-9.]+", value) else None
            if number is None:
                errors.append(f"{name}: a number")
            elif "MinValue" in spec and number < spec["MinValue"] or (
                    "MaxValue" in spec and number > spec["MaxValue"]):
                errors.append(f"{name}: from {spec.get('MinValue')} to {spec.get('MaxValue')}")
    if errors:
        return errors
    renderer = TemplateRenderer(template, parameters, ACCOUNTS["a"])
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not renderer.resolve(rule["RuleCondition"]):
            continue
        for assertion in rule["Assertions"]:
            if not renderer.resolve(assertion["Assert"]):
                errors.append(f"{name}: {assertion.get('AssertDescription', '').strip()}")
    return errors


def rendered_template(parameters: dict, template_path: Path) -> dict:
    """template.yaml for `parameters` as CloudFormation would create it: the parameter errors it
    would refuse the stack with, else the resources whose conditions hold, resolved."""
    template = yaml.load(template_path.read_text(), Loader=CfnLoader)
    errors = parameter_errors(template, parameters)
    if errors:
        return {"errors": errors}
    renderer = TemplateRenderer(template, parameters, ACCOUNTS["a"])
    resources = {
        name: renderer.resolve(resource)
        for name, resource in template["Resources"].items()
        if "Condition" not in resource or renderer.conditions[resource["Condition"]]
    }
    return {"errors": [], "resources": resources}


# ---------------------------------------------------------------------------------------------
# The control API


def record_secrets(*secrets: str) -> None:
    """Appends every secret this emulator hands out to the file named by S3R_SECRETS_FILE, so
    that a scan of the logs of a whole test run can look for each of them."""
    path = os.environ.get("S3R_SECRETS_FILE")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as file:
        for secret in secrets:
            file.write(json.dumps({"pid": os.getpid(), "secret": secret}) + "\n")


class Harness:
    def __init__(self, endpoint: str, state: State, template: Path):
        self.endpoint = endpoint
        self.state = state
        self.template = template
        self.admins = {}

    def client(self, service, credentials=None, account=None):
        config = BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
        if credentials is None:
            credentials = {"access_key_id": "bootstrap", "secret_access_key": "bootstrap"}
        client = boto3.client(
            service, endpoint_url=self.endpoint, region_name=REGION, config=config,
            aws_access_key_id=credentials["access_key_id"],
            aws_secret_access_key=credentials["secret_access_key"],
            aws_session_token=credentials.get("session_token"),
        )
        if account is not None:
            def add_account(request, **_):
                request.headers["x-moto-account-id"] = account
            client.meta.events.register("before-sign", add_account)
        return client

    def create_admins(self):
        for name, account in ACCOUNTS.items():
            iam = self.client("iam", account=account)
            iam.create_user(UserName="admin")
            iam.put_user_policy(UserName="admin", PolicyName="everything", PolicyDocument=json.dumps(
                {"Version": "2012-10-17",
                 "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
            key = iam.create_access_key(UserName="admin")["AccessKey"]
            record_secrets(key["SecretAccessKey"])
            self.admins[name] = {
                "account_id": account,
                "access_key_id": key["AccessKeyId"],
                "secret_access_key": key["SecretAccessKey"],
                "arn": f"arn:aws:iam::{account}:user/admin",
            }

    def create_role(self, account_name: str, name: str, policies: dict) -> dict:
        admin = self.admins[account_name]
        iam = self.client("iam", admin)
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{admin['account_id']}:root"},
            "Action": "sts:AssumeRole"}]}
        role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
        for policy_name, document in policies.items():
            iam.put_role_policy(RoleName=name, PolicyName=policy_name,
                                PolicyDocument=json.dumps(document))
        credentials = self.client("sts", admin).assume_role(
            RoleArn=role["Arn"], RoleSessionName="s3-replicator")["Credentials"]
        record_secrets(credentials["SecretAccessKey"], credentials["SessionToken"])
        return {
            "account_id": admin["account_id"],
            "role_arn": role["Arn"],
            "access_key_id": credentials["AccessKeyId"],
            "secret_access_key": credentials["SecretAccessKey"],
            "session_token": credentials["SessionToken"],
            "policies": policies,
        }

    def __call__(self, request: Request):
        try:
            body = request.get_json(silent=True) or {}
            route = request.path[len("/_harness/"):]
            if route == "info":
                result = {"endpoint": self.endpoint, "region": REGION, "accounts": self.admins,
                          "moto_version": moto.__version__}
            elif route == "role":
                result = self.create_role(body["account"], body["name"], body["policies"])
            elif route == "function-role":
                policies = function_role_policies(body.get("parameters", {}), self.template,
                                                  ACCOUNTS["a"])
                for name in body.get("drop_policies", []):
                    policies.pop(name)
                dropped = set(body.get("drop_statements", []))
                for document in policies.values():
                    kept = [st for st in as_list(document["Statement"]) if st.get("Sid") not in dropped]
                    dropped -= {st.get("Sid") for st in as_list(document["Statement"])}
                    document["Statement"] = kept
                if dropped:
                    raise ValueError(f"no statements with Sid {sorted(dropped)} in template.yaml")
                # "Sid/action": one action left out of one statement.
                for entry in body.get("drop_actions", []):
                    sid, action = entry.split("/", 1)
                    found = False
                    for document in policies.values():
                        for statement in as_list(document["Statement"]):
                            if statement.get("Sid") == sid and action in as_list(statement["Action"]):
                                found = True
                                statement["Action"] = [a for a in as_list(statement["Action"])
                                                       if a != action]
                        # A statement left with no action is left out.
                        document["Statement"] = [st for st in as_list(document["Statement"])
                                                 if st["Action"]]
                    if not found:
                        raise ValueError(f"no action {action} in statement {sid} of template.yaml")
                result = self.create_role("a", body["name"], policies)
            elif route == "template":
                result = rendered_template(body.get("parameters", {}), self.template)
            elif route == "template-outputs":
                result = template_outputs(body.get("parameters", {}), self.template, ACCOUNTS["a"],
                                          body["role_arn"])
            elif route == "queue":
                result = self.create_queue(body["queue"])
            elif route == "queue-notifications":
                result = self.queue_notifications(body["bucket"], body["queue"])
            elif route == "receive":
                result = self.receive(body["queue_url"], int(body.get("max_messages", 10)),
                                      int(body.get("min_messages", 1)))
            elif route == "object-owner":
                with self.state.lock:
                    owner = self.state.owners.get((request.args["bucket"], request.args["key"]))
                result = {"owner": owner.account if owner else None}
            elif route == "fault":
                fault = {"path_contains": body["path_contains"], "method": body.get("method"),
                         "query_contains": body.get("query_contains", ""),
                         "status": int(body.get("status", 503)), "code": body.get("code", "SlowDown"),
                         "count": int(body.get("count", 1))}
                with self.state.lock:
                    self.state.faults.append(fault)
                result = {"armed": fault}
            elif route == "invocations":
                # The queued invocations made by one role (one test's function), taken.
                role = body["role_arn"].rsplit("/", 1)[-1]
                with self.state.lock:
                    taken = [i for i in self.state.invocations if i[2] == role]
                    self.state.invocations = [i for i in self.state.invocations if i[2] != role]
                result = {"invocations": [{"function_arn": arn, "payload": payload}
                                          for arn, payload, _ in taken]}
            elif route == "trigger":
                trigger = {"method": body["method"], "path_contains": body["path_contains"],
                           "query_contains": body.get("query_contains", ""),
                           "skip": int(body.get("skip", 0)), "count": int(body.get("count", 1))}
                with self.state.lock:
                    if "hold" in body:
                        trigger["hold"] = self.state.holds.setdefault(
                            body["hold"], {"arrived": threading.Event(),
                                           "release": threading.Event()})
                    else:
                        trigger["put"] = body["put"]
                    self.state.triggers.append(trigger)
                result = {"armed": True}
            elif route == "wait-held":
                # Returns once a request has met the named hold (and waits there).
                with self.state.lock:
                    hold = self.state.holds[body["name"]]
                result = {"held": hold["arrived"].wait(timeout=HOLD_LIMIT_SECONDS)}
            elif route == "release":
                with self.state.lock:
                    hold = self.state.holds.pop(body["name"])
                hold["release"].set()
                result = {"released": True}
            elif route == "stats":
                with self.state.lock:
                    result = {"denials": self.state.denials,
                              "operations": json.loads(json.dumps(self.state.operations))}
            elif route == "archive-tier":
                # Moves an object into an Intelligent-Tiering archive tier.
                with self.state.lock:
                    self.state.archive_tiers[(body["bucket"], body["key"])] = body.get(
                        "tier", "ARCHIVE_ACCESS")
                result = {"archived": True}
            elif route == "hold-restore":
                # The object's next RestoreObject stays in progress until complete-restore.
                with self.state.lock:
                    self.state.held_restores[(body["bucket"], body["key"])] = "held"
                result = {"held": True}
            elif route == "complete-restore":
                result = self.complete_restore(body["bucket"], body["key"])
            else:
                return Response(json.dumps({"error": f"no route {route}"}), 404,
                                content_type="application/json")
            return Response(json.dumps(result), 200, content_type="application/json")
        except Exception as error:  # reported to the test, which fails with the message
            logging.exception("harness request failed")
            return Response(json.dumps({"error": f"{type(error).__name__}: {error}"}), 500,
                            content_type="application/json")

    def complete_restore(self, bucket: str, key: str) -> dict:
        """Ends a held restore: the object becomes readable (moto's own restore, for the
        Glacier storage classes; leaving the archive tier, for Intelligent-Tiering)."""
        with self.state.lock:
            state = self.state.held_restores.pop((bucket, key), None)
            tier = self.state.archive_tiers.pop((bucket, key), None)
        if state != "ongoing":
            raise ValueError(f"no restore of {bucket}/{key} in progress")
        if tier is None:
            _, bucket_obj = find_bucket(bucket)
            bucket_obj.keys.get(key).restore(1)
        return {"restored": True}

    def put_object(self, account: str, bucket: str, key: str, body: str) -> None:
        """Writes an object as the account's admin (for triggers)."""
        data = body.encode()
        if body.startswith("repeat:"):
            _, char, count = body.split(":")
            data = char.encode() * int(count)
        self.client("s3", self.admins[account]).put_object(Bucket=bucket, Key=key, Body=data)

    def create_queue(self, queue: str) -> dict:
        """Creates an SQS queue in account A."""
        sqs = self.client("sqs", self.admins["a"])
        url = sqs.create_queue(QueueName=queue)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return {"queue_url": url, "queue_arn": arn}

    def queue_notifications(self, bucket: str, queue: str) -> dict:
        admin = self.admins["a"]
        created = self.create_queue(queue)
        url, arn = created["queue_url"], created["queue_arn"]
        self.client("s3", admin).put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={"QueueConfigurations": [
                {"QueueArn": arn, "Events": NOTIFICATION_EVENTS}]})
        return {"queue_url": url, "queue_arn": arn}

    def receive(self, queue_url: str, max_messages: int, min_messages: int) -> dict:
        """Receives up to max_messages and returns them as the SQS event Lambda would deliver.

        moto sends a bucket's notifications while it serves the request that caused them, so the
        messages are in the queue before that request returns: no waiting. A queue that answers
        empty three times in a row has no more to give."""
        sqs = self.client("sqs", self.admins["a"])
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        messages = []
        empty = 0
        while len(messages) < min_messages and empty < 3:
            batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=min(10, max_messages - len(messages)),
                                        AttributeNames=["All"]).get("Messages", [])
            empty = 0 if batch else empty + 1
            messages.extend(batch)
            if len(messages) >= max_messages:
                break
        return {"Records": [{
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": REGION,
        } for m in messages]}


# ---------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--no-stdin-watch", action="store_true",
                        help="keep serving after standard input closes (stop with a signal)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    state = State()
    holder = {}
    app = AuthorizingApp(DomainDispatcherApplication(create_backend_app), state,
                         lambda request: holder["harness"](request))
    server = make_server("127.0.0.1", args.port, app, threaded=True, request_handler=MotoRequestHandler)
    endpoint = f"http://127.0.0.1:{server.server_port}"
    harness = Harness(endpoint, state, args.template)
    holder["harness"] = harness
    app.control = harness
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    harness.create_admins()
    print(json.dumps({"endpoint": endpoint, "region": REGION, "accounts": harness.admins}), flush=True)
    if args.no_stdin_watch:
        thread.join()
    else:
        sys.stdin.read()
        server.shutdown()


if __name__ == "__main__":
    main()

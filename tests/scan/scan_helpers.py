"""Seeding and fault injection for the scanner and fixer tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.awsrequest import AWSResponse

from sse_guard.policy import Policy

# Keys that break naive code: spaces, unicode, a literal %, and one that looks like a
# version query (a string CopySource would split it).
AWKWARD_KEYS = (
    "dir with space/file name.txt",
    "ünïcödé/日本語.txt",
    "percent/100%25 sure%.txt",
    "tricky/photo.jpg?versionId=abc123",
)

V3_META = {"x-amz-c": "115", "x-amz-3": "d3JhcHBlZA==", "x-amz-w": "12", "x-amz-d": "Y29tbWl0", "x-amz-i": "aWQ="}
V3_INSTRUCTION_META = {"x-amz-c": "115", "x-amz-d": "Y29tbWl0", "x-amz-i": "aWQ="}
V2_META = {
    "x-amz-key-v2": "d3JhcHBlZA==",
    "x-amz-iv": "aXY=",
    "x-amz-cek-alg": "AES/GCM/NoPadding",
    "x-amz-wrap-alg": "kms+context",
    "x-amz-tag-len": "128",
    "x-amz-matdesc": "{}",
}


@dataclass
class Keys:
    a: str  # ARN of key A (alias/key-a)
    b: str  # ARN of key B


def alias_of(backend: Any, arn: str) -> str:
    kms = backend.client("kms")
    for entry in kms.list_aliases()["Aliases"]:
        if entry.get("TargetKeyId") and arn.endswith(entry["TargetKeyId"]):
            return str(entry["AliasName"])
    raise AssertionError("no alias")


def kms_a_policy(backend: Any, keys: Keys, **extra: Any) -> Policy:
    return Policy.from_dict(
        {"rules": [{"bucket": "*", "algorithm": "aws:kms", "kms_key_id": alias_of(backend, keys.a)}], **extra}
    )


def seed_every_class(s3: Any, bucket: str, keys: Keys, *, alias: str) -> dict[str, str]:
    """One object of each class in ``bucket`` (no bucket encryption: moto stores plaintext).

    Returns key -> the class the scanner must report.
    """
    expected: dict[str, str] = {}

    def put(key: str, cls: str, **kw: Any) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=b"content of " + key.encode(), **kw)
        expected[key] = cls

    put("legacy/plain.txt", "NOT-SSE")
    put("sse-s3.txt", "SSE-S3", ServerSideEncryption="AES256")
    put("kms-a.txt", "SSE-KMS", ServerSideEncryption="aws:kms", SSEKMSKeyId=alias)
    put("kms-a-arn.txt", "SSE-KMS", ServerSideEncryption="aws:kms", SSEKMSKeyId=keys.a)
    put("kms-b.txt", "SSE-KMS", ServerSideEncryption="aws:kms", SSEKMSKeyId=keys.b)
    put("dsse.txt", "DSSE-KMS", ServerSideEncryption="aws:kms:dsse", SSEKMSKeyId=keys.a)
    put("fsx.bin", "OTHER", ServerSideEncryption="aws:fsx")
    put("client/v3.bin", "CLIENT-SIDE", Metadata=V3_META)
    put("client/v2.bin", "CLIENT-SIDE", Metadata=V2_META)
    for k in AWKWARD_KEYS:
        put(k, "NOT-SSE")
    return expected


def _response(request: Any, status: int, body: bytes = b"") -> AWSResponse:
    class Raw:
        def stream(self, *args: Any, **kwargs: Any) -> Any:
            yield body

    resp = AWSResponse(request.url, status, {"x-amz-request-id": "injected"}, Raw())
    return resp


class Faults:
    """Answers chosen requests itself at ``before-send`` (what real S3 would say)."""

    def __init__(self) -> None:
        self.rules: list[tuple[Callable[[Any], bool], int, bytes]] = []
        self.calls = 0
        self.injected = 0

    def attach(self, client: Any) -> Any:
        client.meta.events.register_first("before-send.s3", self._handle, unique_id=f"faults-{id(self)}")
        return client

    def when(self, predicate: Callable[[Any], bool], status: int, body: bytes = b"") -> None:
        self.rules.append((predicate, status, body))

    def _handle(self, request: Any, **kwargs: Any) -> Any:
        self.calls += 1
        for predicate, status, body in self.rules:
            if predicate(request):
                self.injected += 1
                return _response(request, status, body)
        return None


SLOWDOWN = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"

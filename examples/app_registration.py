"""Registering sse_guard in an application, with the policy read from a file.

The application registers the guard once, on the boto3 session it makes at start-up;
every S3 client made from that session afterwards is guarded, managed transfers
included, and none of the code that writes to S3 changes.

    python examples/app_registration.py

It runs against moto in-process (``pip install 'moto[s3,kms]'``), so it needs no AWS
account: ``main`` sets up fake credentials, the buckets and the KMS keys the policy names,
runs the application, and checks with an unguarded client what was stored. It exits
non-zero if the guard did not do what it says.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

import sse_guard

POLICY_FILE = Path(__file__).with_name("sse-guard.toml")


# -- the application -------------------------------------------------------------------


def make_session(policy_file: Path = POLICY_FILE, *, mode: sse_guard.policy.Mode | None = None) -> tuple[boto3.Session, sse_guard.Guard]:
    """The application's one boto3 session, guarded before any client is made from it.

    Clients made from the session *before* register() are not guarded: register first.
    """
    session = boto3.Session()
    guard = sse_guard.register(session, policy=sse_guard.Policy.from_file(policy_file), mode=mode)
    return session, guard


class ReportStore:
    """Application code: it knows nothing about encryption."""

    def __init__(self, session: boto3.Session) -> None:
        self._s3: Any = session.client("s3")

    def save(self, bucket: str, key: str, body: bytes, **extra: Any) -> None:
        self._s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)

    def upload(self, bucket: str, key: str, body: bytes) -> None:
        self._s3.upload_fileobj(io.BytesIO(body), bucket, key)


# -- the demonstration, on moto ----------------------------------------------------------

_FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


@contextmanager
def fake_aws() -> Iterator[None]:
    """moto in-process, with fake credentials: nothing here can reach real AWS."""
    from moto import mock_aws

    saved = {name: os.environ.get(name) for name in [*_FAKE_AWS, "AWS_PROFILE", "AWS_ENDPOINT_URL"]}
    os.environ.update(_FAKE_AWS)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        with mock_aws():
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Failed(Exception):
    pass


def expect(what: str, actual: object, expected: object) -> None:
    if actual != expected:
        raise Failed(f"{what}: expected {expected!r}, got {actual!r}")


def stored(admin: Any, bucket: str, key: str) -> Mapping[str, Any]:
    """What S3 (moto) recorded for the object, read with an unguarded client."""
    head: Mapping[str, Any] = admin.head_object(Bucket=bucket, Key=key)
    return head


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="  log: %(name)s %(levelname)s %(message)s")
    with fake_aws():
        admin: Any = boto3.client("s3")  # unguarded: sets things up and inspects
        kms: Any = boto3.client("kms")
        keys = {}
        for alias in ("alias/acme-pii", "alias/acme-audit", "alias/acme-data"):
            arn = kms.create_key()["KeyMetadata"]["Arn"]
            kms.create_alias(AliasName=alias, TargetKeyId=arn)
            keys[alias] = arn
        for bucket in ("acme-prod-eu", "acme-audit", "acme-logs-2026", "acme-data"):
            admin.create_bucket(Bucket=bucket)
        admin.put_bucket_encryption(
            Bucket="acme-data",
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": keys["alias/acme-data"]}}]
            },
        )

        # The application starts: one registration, the policy from the file.
        session, guard = make_session()
        print(f"registered {guard!r} from {POLICY_FILE.name} (mode {guard.mode})")
        store = ReportStore(session)

        store.save("acme-prod-eu", "pii/customer-1.json", b"{}")
        head = stored(admin, "acme-prod-eu", "pii/customer-1.json")
        expect("pii/ algorithm", head.get("ServerSideEncryption"), "aws:kms")
        expect("pii/ key (the alias, resolved to its ARN)", head.get("SSEKMSKeyId"), keys["alias/acme-pii"])
        expect("pii/ bucket key", head.get("BucketKeyEnabled"), True)
        print(f"rule acme-prod-*/pii/   -> SSE-KMS under {head['SSEKMSKeyId']}, bucket key on")

        store.upload("acme-prod-eu", "pii/export.csv", b"a,b\n" * 100)
        expect("managed upload algorithm", stored(admin, "acme-prod-eu", "pii/export.csv").get("ServerSideEncryption"), "aws:kms")
        print("rule acme-prod-*/pii/   -> upload_fileobj (a managed transfer) is guarded too")

        store.save("acme-audit", "2026/evidence.bin", b"\x00")
        expect("audit bucket algorithm", stored(admin, "acme-audit", "2026/evidence.bin").get("ServerSideEncryption"), "aws:kms:dsse")
        print("rule acme-audit         -> DSSE-KMS")

        store.save("acme-logs-2026", "app.log", b"started")
        expect("logs algorithm", stored(admin, "acme-logs-2026", "app.log").get("ServerSideEncryption"), "AES256")
        print("rule acme-logs-*        -> SSE-S3")

        store.save("acme-data", "table.parquet", b"PAR1")
        head = stored(admin, "acme-data", "table.parquet")
        expect("follow-bucket key", head.get("SSEKMSKeyId"), keys["alias/acme-data"])
        print("no rule, bucket default -> the bucket's SSE-KMS key, sent explicitly")

        store.save("acme-prod-eu", "public/readme.txt", b"hello")
        expect("fallback algorithm", stored(admin, "acme-prod-eu", "public/readme.txt").get("ServerSideEncryption"), "AES256")
        print("no rule, no default     -> the [fallback]: SSE-S3")

        # enforce: an explicit contradiction is refused before anything is sent.
        try:
            store.save("acme-prod-eu", "pii/customer-2.json", b"{}", ServerSideEncryption="AES256")
        except sse_guard.PolicyViolation as e:
            print(f"enforce refused         -> {e}")
        else:
            raise Failed("enforce mode let an SSE-S3 write into pii/ through")
        objects = admin.list_objects_v2(Bucket="acme-prod-eu", Prefix="pii/customer-2").get("KeyCount")
        expect("refused write stored", objects, 0)

        stats = guard.stats
        expect("injected", stats.injected, 6)
        expect("refused", stats.refused, 1)
        print(f"stats: injected={stats.injected} refused={stats.refused} lookups={stats.lookups}")
        guard.unregister()

        # audit: the same policy, changing nothing, reporting what it would have done.
        audit_session, audit_guard = make_session(mode="audit")
        ReportStore(audit_session).save("acme-prod-eu", "pii/customer-3.json", b"{}", ServerSideEncryption="AES256")
        expect("audit mode leaves the write alone", stored(admin, "acme-prod-eu", "pii/customer-3.json").get("ServerSideEncryption"), "AES256")
        expect("audited", audit_guard.stats.audited, 1)
        print("audit mode              -> the write went out unchanged, with a warning logged")
        audit_guard.unregister()
    print("app_registration: all claims held")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as e:
        print(f"app_registration: FAILED: {e}", file=sys.stderr)
        sys.exit(1)

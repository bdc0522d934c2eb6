"""``sse-guard demo``: every part end to end against an in-process moto S3 and KMS.

No AWS account is needed and nothing leaves the process: moto answers every request.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

MiB = 1024 * 1024
SSE_PREFIX = "x-amz-server-side-encryption"


class _WireLog:
    """Prints the SSE headers of each request as botocore sent it."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.enabled = True
        self._lock = threading.Lock()

    def __call__(self, request: Any, event_name: str, **kwargs: Any) -> None:
        if not self.enabled:
            return
        operation = event_name.rsplit(".", 1)[-1]
        if operation in ("GetBucketEncryption", "HeadObject", "GetObject", "ListObjectsV2"):
            return
        sse = {
            k.lower(): (v.decode() if isinstance(v, bytes) else v)
            for k, v in request.headers.items()
            if k.lower().startswith(SSE_PREFIX) and "customer-key" not in k.lower()
        }
        shown = "  ".join(f"{_LABELS.get(k, k)}={_short(v)}" for k, v in sorted(sse.items()))
        with self._lock:  # s3transfer's parts come from worker threads
            self.out.write(f"    -> {operation:<24} {shown or '(no SSE headers)'}\n")


_LABELS = {
    SSE_PREFIX: "sse",
    f"{SSE_PREFIX}-aws-kms-key-id": "key",
    f"{SSE_PREFIX}-bucket-key-enabled": "bucket-key",
    f"{SSE_PREFIX}-customer-algorithm": "sse-c",
    f"{SSE_PREFIX}-context": "context",
}


class _Indented:
    """A text stream that indents what the CLI prints, inside the demo's output."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._fresh = True

    def write(self, text: str) -> int:
        for piece in text.splitlines(keepends=True):
            if self._fresh:
                self.out.write("     ")
            self.out.write(piece)
            self._fresh = piece.endswith("\n")
        return len(text)

    def flush(self) -> None:
        self.out.flush()


def _short(value: str) -> str:
    return value if len(value) < 40 else value[:20] + "..." + value[-12:]


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        from moto import mock_aws
    except ImportError:
        print("sse-guard demo needs moto: pip install 'sse-guard[test]'", file=sys.stderr)
        return 2
    for name, value in {
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_KMS", "AWS_PROFILE"):
        os.environ.pop(name, None)
    with mock_aws():
        return _run(out)


def _run(out: TextIO) -> int:
    import boto3
    from boto3.s3.transfer import TransferConfig

    import sse_guard

    def say(text: str = "") -> None:
        print(text, file=out)

    session = boto3.Session(region_name="us-east-1")
    admin = session.client("s3")
    kms = session.client("kms")
    key_arn = kms.create_key(Description="sse-guard demo")["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/demo-app", TargetKeyId=key_arn)

    say("sse-guard demo: in-process moto S3 and KMS, no AWS account, nothing leaves this process")
    say()
    say("1. A bucket whose default encryption is SSE-KMS with a bucket key")
    admin.create_bucket(Bucket="demo-prod")
    admin.put_bucket_encryption(
        Bucket="demo-prod",
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    admin.create_bucket(Bucket="demo-legacy")
    say("   and a legacy bucket with no encryption configuration, written before any rule:")
    admin.put_object(
        Bucket="demo-legacy",
        Key="reports/2019.csv",
        Body=b"id,amount\n1,100\n",
        ContentType="text/csv",
        Metadata={"owner": "finance"},
        Tagging="retention=7y",
        StorageClass="STANDARD_IA",
    )
    say("    -> PutObject (unguarded)     (no SSE headers): stored as plaintext")

    say()
    say("2. sse_guard.register(session): call sites unchanged, SSE added on the wire")
    policy = sse_guard.Policy.from_dict(
        {
            "rules": [
                {
                    "bucket": "demo-prod",
                    "prefix": "vault/",
                    "algorithm": "client-side",
                    "encryption_context": {"team": "payments"},
                    "keyring": {"type": "kms", "key_id": "alias/demo-app"},
                }
            ]
        }
    )
    guard = sse_guard.register(session, policy=policy)
    s3 = session.client("s3")
    wire = _WireLog(out)
    s3.meta.events.register("before-send.s3", wire, unique_id="sse-guard-demo-wire")
    s3.put_object(Bucket="demo-prod", Key="orders/1.json", Body=b'{"order": 1}')
    body = io.BytesIO(os.urandom(12 * MiB))
    s3.upload_fileobj(
        body, "demo-prod", "exports/big.bin", Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    )
    say("   (the multipart upload: SSE on CreateMultipartUpload, where S3 takes it; none on the parts)")
    head = s3.head_object(Bucket="demo-prod", Key="exports/big.bin")
    say(f"   stored as {head['ServerSideEncryption']} with key {_short(head['SSEKMSKeyId'])}")
    stats = guard.stats
    say(f"   guard: {stats.injected} injected, {stats.lookups} GetBucketEncryption lookup, {stats.cache_hits} cache hits")
    legacy = admin.head_object(Bucket="demo-legacy", Key="reports/2019.csv")
    say(f"   the legacy object is still {legacy.get('ServerSideEncryption', 'NOT encrypted')}")

    say()
    say("3. Client-side envelope encryption of one prefix (rule: demo-prod/vault/, KMS keyring)")
    secret = b"card=4111111111111111;exp=12/29"
    s3.put_object(Bucket="demo-prod", Key="vault/card.txt", Body=secret)
    stored = admin.get_object(Bucket="demo-prod", Key="vault/card.txt")
    ciphertext = stored["Body"].read()
    fmt = "V3 (key-committing)" if stored["Metadata"].get("x-amz-c") == "115" else "V2"
    say(f"   S3 holds {len(ciphertext)} bytes of ciphertext in the S3 Encryption Client's {fmt} format;")
    say(f"   plaintext visible to S3: {secret in ciphertext}")
    read_back = s3.get_object(Bucket="demo-prod", Key="vault/card.txt")["Body"].read()
    say(f"   a guarded GetObject returns the verified plaintext: {read_back == secret}")
    tampered = bytearray(ciphertext)
    tampered[0] ^= 1
    admin.put_object(Bucket="demo-prod", Key="vault/card.txt", Body=bytes(tampered), Metadata=stored["Metadata"])
    try:
        s3.get_object(Bucket="demo-prod", Key="vault/card.txt")["Body"].read()
        say("   a tampered object was returned: THIS IS A BUG")
        return 1
    except sse_guard.DecryptionError:
        say("   one flipped bit in S3: DecryptionError, no plaintext released")

    say()
    say("4. Enforce mode refuses a weaker write before anything is sent")
    wire.enabled = False
    strict_client = boto3.Session(region_name="us-east-1").client("s3")
    sse_guard.register(strict_client, policy=sse_guard.Policy(), mode="enforce")
    try:
        strict_client.put_object(Bucket="demo-prod", Key="weak.txt", Body=b"x", ServerSideEncryption="AES256")
        say("   the weak write went out: THIS IS A BUG")
        return 1
    except sse_guard.PolicyViolation as e:
        say(f"   PolicyViolation: {e}")
    wire.enabled = True
    guard.unregister()

    say()
    say("5. The legacy object: sse-guard scan finds it, sse-guard fix re-encrypts it in place")
    from . import cli

    def run(*argv: str) -> int:
        say(f"   $ sse-guard {' '.join(argv)}")
        indented = _Indented(out)
        with contextlib.redirect_stdout(indented), contextlib.redirect_stderr(indented):
            return cli.main([*argv, "--no-progress"] if argv[0] == "scan" else list(argv))

    before = run("scan", "s3://demo-legacy")
    say(f"   [exit {before}]")
    fixed = run("fix", "s3://demo-legacy", "--apply")
    say(f"   [exit {fixed}]")
    after = run("scan", "s3://demo-legacy")
    say(f"   [exit {after}]")
    head = admin.head_object(Bucket="demo-legacy", Key="reports/2019.csv")
    tags = admin.get_object_tagging(Bucket="demo-legacy", Key="reports/2019.csv")["TagSet"]
    say(
        f"   after the fix: {head.get('ServerSideEncryption')}, content type {head['ContentType']}, "
        f"metadata {head['Metadata']}, storage class {head.get('StorageClass', 'STANDARD')}, "
        f"tags {[t['Key'] + '=' + t['Value'] for t in tags]}: kept"
    )
    if (before, fixed, after) != (1, 0, 0):
        say("   the scan/fix round trip did not end compliant: THIS IS A BUG")
        return 1
    say()
    say("Done. See README.md for the policy file, the modes and the CLI.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

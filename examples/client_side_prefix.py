"""Client-side envelope encryption of one prefix, the rest of the bucket server-side.

Objects under ``vault/`` are encrypted in this process before they are sent, in the
Amazon S3 Encryption Client's V3 format (AWS's own clients read them); a guarded
GetObject or download_file returns the verified plaintext, and a tampered object is
refused with DecryptionError. Everything else gets SSE-KMS on the wire.

    python examples/client_side_prefix.py

Runs against moto in-process; exits non-zero if any claim does not hold.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig

import sse_guard

MiB = 1024 * 1024
BUCKET = "acme-vault"


def policy() -> sse_guard.Policy:
    return sse_guard.Policy.from_dict(
        {
            "mode": "enforce",
            "rules": [
                {
                    "bucket": BUCKET,
                    "prefix": "vault/",
                    "algorithm": "client-side",
                    "encryption_context": {"team": "payments"},
                    "keyring": {"type": "kms", "key_id": "alias/acme-vault"},
                },
                {"bucket": BUCKET, "algorithm": "aws:kms", "kms_key_id": "alias/acme-vault", "bucket_key": True},
            ],
        }
    )


def check(claim: str, ok: bool) -> None:
    print(f"  [{'ok' if ok else 'FAILED'}] {claim}")
    if not ok:
        raise SystemExit(1)


def demonstrate() -> None:
    admin: Any = boto3.client("s3")
    kms: Any = boto3.client("kms")
    kms.create_alias(AliasName="alias/acme-vault", TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])
    admin.create_bucket(Bucket=BUCKET)

    session = boto3.Session()
    sse_guard.register(session, policy=policy())
    s3: Any = session.client("s3")

    card = b"4111 1111 1111 1111"
    s3.put_object(Bucket=BUCKET, Key="vault/card.txt", Body=card)
    stored = admin.get_object(Bucket=BUCKET, Key="vault/card.txt")
    check("S3 stores ciphertext in the S3EC V3 format", stored["Metadata"].get("x-amz-c") == "115")
    check("the plaintext is not in what S3 stores", card not in stored["Body"].read())
    check("a guarded GetObject returns the plaintext", s3.get_object(Bucket=BUCKET, Key="vault/card.txt")["Body"].read() == card)

    big = os.urandom(12 * MiB + 5)
    parts = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_fileobj(io.BytesIO(big), BUCKET, "vault/export.bin", Config=parts)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export.bin"
        s3.download_file(BUCKET, "vault/export.bin", str(out), Config=parts)
        check("a multipart upload and a parallel download_file round-trip", out.read_bytes() == big)

    raw = admin.get_object(Bucket=BUCKET, Key="vault/card.txt")
    body = bytearray(raw["Body"].read())
    body[0] ^= 0x01
    admin.put_object(Bucket=BUCKET, Key="vault/card.txt", Body=bytes(body), Metadata=raw["Metadata"])
    try:
        s3.get_object(Bucket=BUCKET, Key="vault/card.txt")["Body"].read()
        check("a tampered object is refused", False)
    except sse_guard.DecryptionError:
        check("a tampered object is refused with DecryptionError", True)

    admin.put_object(Bucket=BUCKET, Key="vault/planted.txt", Body=b"plaintext of an attacker's choosing")
    try:
        s3.get_object(Bucket=BUCKET, Key="vault/planted.txt")["Body"].read()
        check("plaintext planted under the prefix is refused", False)
    except sse_guard.DecryptionError:
        check("plaintext planted under the prefix is refused", True)

    s3.put_object(Bucket=BUCKET, Key="public/readme.txt", Body=b"hello")
    head = admin.head_object(Bucket=BUCKET, Key="public/readme.txt")
    check("outside the prefix the object gets SSE-KMS", head.get("ServerSideEncryption") == "aws:kms")


def main() -> int:
    from moto import mock_aws

    os.environ.update(AWS_ACCESS_KEY_ID="example", AWS_SECRET_ACCESS_KEY="example", AWS_DEFAULT_REGION="us-east-1")
    print("client-side encryption of one prefix:")
    with mock_aws():
        demonstrate()
    return 0


if __name__ == "__main__":
    sys.exit(main())

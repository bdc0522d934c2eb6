"""Both directions against AWS's own Python client (amazon-s3-encryption-client-python)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from .conftest import Harness

s3_encryption = pytest.importorskip("s3_encryption")
from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig  # noqa: E402
from s3_encryption.materials.kms_keyring import KmsKeyring as OfficialKmsKeyring  # noqa: E402
from s3_encryption.materials.materials import AlgorithmSuite, CommitmentPolicy  # noqa: E402

MiB = 1024 * 1024
CONTEXTS = {"no-context": {}, "context": {"team": "payments", "tier": "gold"}}


def official(h: Harness, fmt: str) -> Any:
    if fmt == "v3":
        config = S3EncryptionClientConfig(keyring=OfficialKmsKeyring(kms_client=h.kms, kms_key_id=h.key_id))
    else:
        config = S3EncryptionClientConfig(
            keyring=OfficialKmsKeyring(kms_client=h.kms, kms_key_id=h.key_id),
            encryption_algorithm=AlgorithmSuite.ALG_AES_256_GCM_IV12_TAG16_NO_KDF,
            commitment_policy=CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT,
        )
    return S3EncryptionClient(wrapped_s3_client=h.plain_client(), config=config)


@pytest.mark.parametrize("fmt", ["v3", "v2"])
@pytest.mark.parametrize("ctx", sorted(CONTEXTS))
def test_objects_written_by_the_official_client_decrypt_through_ours(harness: Harness, fmt: str, ctx: str) -> None:
    context = CONTEXTS[ctx]
    harness.rule(format=fmt, context=tuple(sorted(context.items())))
    data = os.urandom(300_001)
    kwargs: dict[str, Any] = {"EncryptionContext": context} if context else {}
    official(harness, fmt).put_object(Bucket=harness.bucket, Key="theirs", Body=data, **kwargs)
    assert harness.s3.get_object(Bucket=harness.bucket, Key="theirs")["Body"].read() == data


@pytest.mark.parametrize("fmt", ["v3", "v2"])
@pytest.mark.parametrize("ctx", sorted(CONTEXTS))
@pytest.mark.parametrize("instruction_file", [False, True], ids=["metadata", "instruction-file"])
@pytest.mark.parametrize("size", [1234, 11 * MiB + 3], ids=["single", "multipart"])
def test_objects_written_by_us_decrypt_through_the_official_client(
    harness: Harness, fmt: str, ctx: str, instruction_file: bool, size: int
) -> None:
    import io

    from boto3.s3.transfer import TransferConfig

    context = CONTEXTS[ctx]
    harness.rule(format=fmt, context=tuple(sorted(context.items())), instruction_file=instruction_file)
    data = os.urandom(size)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    harness.s3.upload_fileobj(io.BytesIO(data), harness.bucket, "ours", Config=config)
    kwargs: dict[str, Any] = {"EncryptionContext": context} if context else {}
    got = official(harness, fmt).get_object(Bucket=harness.bucket, Key="ours", **kwargs)
    assert got["Body"].read() == data

"""Managed and manual multipart uploads make one S3EC GCM stream; failures abort."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sse_guard.envelope import RawAesKeyring
from sse_guard.errors import EncryptionError

from .conftest import Harness, raw_object

# Round trips, multipart and tampering also run on the strict tier, which verifies the
# request checksums of a replaced body and SSE-C keys (moto checks neither).
pytestmark = pytest.mark.strict_s3

MiB = 1024 * 1024
CONFIG = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)


@pytest.mark.parametrize("size", [20 * MiB + 12345, 20 * MiB, 5 * MiB])
def test_upload_file_above_the_threshold_stores_one_decryptable_object(
    harness: Harness, tmp_path: Path, size: int
) -> None:
    harness.rule()
    data = os.urandom(size)
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    harness.s3.upload_file(str(path), harness.bucket, "big", Config=CONFIG)
    stored, metadata = raw_object(harness, "big")
    assert len(stored) == size + 16
    assert metadata["x-amz-c"] == "115"
    assert harness.s3.get_object(Bucket=harness.bucket, Key="big")["Body"].read() == data
    assert harness.state.uploads_in_progress == 0


def test_upload_fileobj_v2_instruction_file(harness: Harness) -> None:
    import io

    harness.rule(format="v2", instruction_file=True)
    data = os.urandom(11 * MiB)
    harness.s3.upload_fileobj(io.BytesIO(data), harness.bucket, "fo", Config=CONFIG)
    assert harness.s3.get_object(Bucket=harness.bucket, Key="fo")["Body"].read() == data


def test_multipart_ciphertext_is_the_single_object_gcm_of_the_plaintext(harness: Harness) -> None:
    key = os.urandom(32)
    harness.rule(keyring=RawAesKeyring(key), format="v2")
    s3 = harness.s3
    data = os.urandom(12 * MiB + 7)
    upload = s3.create_multipart_upload(Bucket=harness.bucket, Key="m")
    uid = upload["UploadId"]
    parts = []
    for number, offset in enumerate(range(0, len(data), 5 * MiB), start=1):
        r = s3.upload_part(Bucket=harness.bucket, Key="m", UploadId=uid, PartNumber=number, Body=data[offset : offset + 5 * MiB])
        parts.append({"PartNumber": number, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket=harness.bucket, Key="m", UploadId=uid, MultipartUpload={"Parts": parts})
    stored, metadata = raw_object(harness, "m")
    from sse_guard.envelope.format import decode_header

    header = decode_header(metadata)
    data_key = RawAesKeyring(key).unwrap_data_key(header, context={})
    assert header.iv is not None
    assert AESGCM(data_key).decrypt(header.iv, stored, None) == data


def test_a_retried_part_replays_identical_bytes(harness: Harness) -> None:
    from sse_guard.envelope.cipher import ContentKey
    from sse_guard.envelope.multipart import MultipartEncryption

    content = ContentKey(os.urandom(32), os.urandom(12))
    mp = MultipartEncryption(content)
    first = mp.encrypt_part(1, os.urandom(5 * MiB))
    once = first.read()
    first.seek(0)
    assert first.read() == once
    second = mp.encrypt_part(2, b"tail")
    tail = second.read()
    second.seek(0)
    assert second.read() == tail
    assert len(tail) == 4 + 16
    assert mp.finish([1, 2]) is None


def test_out_of_order_part_fails_loudly_instead_of_storing_a_wrong_object() -> None:
    from sse_guard.envelope.cipher import ContentKey
    from sse_guard.envelope.multipart import MultipartEncryption

    mp = MultipartEncryption(ContentKey(os.urandom(32), os.urandom(12)), order_timeout=0.2)
    with pytest.raises(EncryptionError):
        mp.encrypt_part(2, b"x" * 10)
    with pytest.raises(EncryptionError):
        mp.finish([1])


def test_a_missing_part_in_complete_is_refused_and_the_upload_aborted(harness: Harness) -> None:
    harness.rule()
    s3 = harness.s3
    uid = s3.create_multipart_upload(Bucket=harness.bucket, Key="x")["UploadId"]
    etags = []
    for n in (1, 2):
        etags.append(s3.upload_part(Bucket=harness.bucket, Key="x", UploadId=uid, PartNumber=n, Body=os.urandom(5 * MiB))["ETag"])
    with pytest.raises(EncryptionError):
        s3.complete_multipart_upload(
            Bucket=harness.bucket, Key="x", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": etags[1]}]}
        )
    assert s3.list_multipart_uploads(Bucket=harness.bucket).get("Uploads", []) == []


def test_a_failure_mid_upload_aborts_and_leaves_no_parts(harness: Harness, tmp_path: Path) -> None:
    harness.rule()
    harness.state.order_timeout = 2.0
    path = tmp_path / "src.bin"
    path.write_bytes(os.urandom(16 * MiB))

    def explode(params: dict[str, object], **kwargs: object) -> None:
        if params.get("PartNumber") == 3:
            raise RuntimeError("disk on fire")

    harness.s3.meta.events.register_first("before-parameter-build.s3.UploadPart", explode, unique_id="explode")
    with pytest.raises(Exception, match="disk on fire"):
        harness.s3.upload_file(str(path), harness.bucket, "f", Config=CONFIG)
    assert harness.s3.list_multipart_uploads(Bucket=harness.bucket).get("Uploads", []) == []
    assert harness.state.uploads_in_progress == 0


def test_many_threads_upload_concurrently(harness: Harness, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    harness.rule()
    blobs = {f"t{i}": os.urandom(6 * MiB + i) for i in range(4)}
    for name, blob in blobs.items():
        (tmp_path / name).write_bytes(blob)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: harness.s3.upload_file(str(tmp_path / n), harness.bucket, n, Config=CONFIG), blobs))
    for name, blob in blobs.items():
        assert harness.s3.get_object(Bucket=harness.bucket, Key=name)["Body"].read() == blob

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


# -- the tag rides in the last part; each part's checksum comes from the absorbing pass ------

import base64  # noqa: E402
import hashlib  # noqa: E402
import zlib  # noqa: E402
from typing import Any  # noqa: E402

from botocore.config import Config  # noqa: E402

from backends import Wire  # noqa: E402


def _wire_parts(wire: Wire, key: str) -> list[Any]:
    return sorted(wire.of("UploadPart", key=key), key=lambda r: int(r.url.split("partNumber=")[1].split("&")[0]))


def _part_sizes(wire: Wire, key: str) -> list[int]:
    return [int(r.headers["content-length"]) for r in _wire_parts(wire, key)]


def test_a_full_sized_last_part_carries_the_tag_no_extra_part(harness: Harness, tmp_path: Path, wire: Wire) -> None:
    harness.rule()
    wire.attach(harness.s3)
    data = os.urandom(10 * MiB)  # two full parts: the size says which one is last
    (tmp_path / "src").write_bytes(data)
    harness.s3.upload_file(str(tmp_path / "src"), harness.bucket, "even", Config=CONFIG)
    assert _part_sizes(wire, "even") == [5 * MiB, 5 * MiB + 16]
    stored, _ = raw_object(harness, "even")
    assert len(stored) == len(data) + 16
    assert harness.s3.get_object(Bucket=harness.bucket, Key="even")["Body"].read() == data


def test_upload_fileobj_of_a_seekable_stream_also_carries_the_tag_in_its_last_part(harness: Harness, wire: Wire) -> None:
    import io

    harness.rule()
    wire.attach(harness.s3)
    data = os.urandom(10 * MiB)
    harness.s3.upload_fileobj(io.BytesIO(data), harness.bucket, "fo", Config=CONFIG)
    assert _part_sizes(wire, "fo") == [5 * MiB, 5 * MiB + 16]
    assert harness.s3.get_object(Bucket=harness.bucket, Key="fo")["Body"].read() == data


@pytest.mark.parametrize("algorithm", [None, "CRC32", "SHA256", "SHA1"])
def test_each_part_checksum_is_over_the_ciphertext_sent(
    harness: Harness, tmp_path: Path, wire: Wire, algorithm: str | None
) -> None:
    harness.rule()
    wire.attach(harness.s3)
    data = os.urandom(12 * MiB + 5)
    (tmp_path / "src").write_bytes(data)
    extra = {"ChecksumAlgorithm": algorithm} if algorithm else None
    harness.s3.upload_file(str(tmp_path / "src"), harness.bucket, "sum", ExtraArgs=extra, Config=CONFIG)
    stored, _ = raw_object(harness, "sum")
    name = (algorithm or "CRC32").lower()
    offset = 0
    for sent in _wire_parts(wire, "sum"):
        size = int(sent.headers["content-length"])
        piece = stored[offset : offset + size]
        offset += size
        digest = zlib.crc32(piece).to_bytes(4, "big") if name == "crc32" else hashlib.new(name, piece).digest()
        assert sent.headers[f"x-amz-checksum-{name}"] == base64.b64encode(digest).decode()
        assert [h for h in sent.headers if h.startswith("x-amz-checksum-")] == [f"x-amz-checksum-{name}"]
    assert offset == len(stored)
    assert harness.s3.get_object(Bucket=harness.bucket, Key="sum")["Body"].read() == data


def test_a_client_that_computes_checksums_only_when_required_gets_none_on_parts(
    harness: Harness, tmp_path: Path, wire: Wire
) -> None:
    harness.rule()
    client = harness.guard(harness.backend.client("s3", config=Config(request_checksum_calculation="when_required")))
    wire.attach(client)
    data = os.urandom(11 * MiB)
    (tmp_path / "src").write_bytes(data)
    client.upload_file(str(tmp_path / "src"), harness.bucket, "nosum", Config=CONFIG)
    parts = _wire_parts(wire, "nosum")
    assert len(parts) == 3
    assert all(not h.startswith("x-amz-checksum-") for p in parts for h in p.headers)
    assert client.get_object(Bucket=harness.bucket, Key="nosum")["Body"].read() == data


@pytest.mark.parametrize("size", [1000, 11 * MiB])  # PutObject; multipart
def test_the_length_hint_never_reaches_the_wire_or_the_object(
    harness: Harness, tmp_path: Path, wire: Wire, size: int
) -> None:
    harness.rule()
    wire.attach(harness.s3)
    (tmp_path / "src").write_bytes(os.urandom(size))
    harness.s3.upload_file(
        str(tmp_path / "src"), harness.bucket, "h", ExtraArgs={"Metadata": {"owner": "me"}}, Config=CONFIG
    )
    assert wire.sent
    assert not [h for r in wire.sent for h in r.headers if "sse-guard" in h]
    metadata = harness.plain_client().head_object(Bucket=harness.bucket, Key="h")["Metadata"]
    assert metadata["owner"] == "me"
    assert not [k for k in metadata if "sse-guard" in k]


def test_an_announced_length_shorter_than_the_parts_fails_instead_of_storing_a_wrong_object() -> None:
    from sse_guard.envelope.cipher import ContentKey
    from sse_guard.envelope.multipart import MultipartEncryption

    mp = MultipartEncryption(ContentKey(os.urandom(32), os.urandom(12)), plaintext_length=5 * MiB)
    assert len(mp.encrypt_part(1, os.urandom(5 * MiB)).read()) == 5 * MiB + 16  # the tag is in
    with pytest.raises(EncryptionError, match="after the final part"):
        mp.encrypt_part(2, os.urandom(5 * MiB))


def test_an_announced_length_longer_than_the_parts_falls_back_to_a_tag_part() -> None:
    from sse_guard.envelope.cipher import ContentKey
    from sse_guard.envelope.multipart import MultipartEncryption

    mp = MultipartEncryption(ContentKey(os.urandom(32), os.urandom(12)), plaintext_length=15 * MiB)
    assert len(mp.encrypt_part(1, os.urandom(5 * MiB)).read()) == 5 * MiB
    assert len(mp.encrypt_part(2, os.urandom(5 * MiB)).read()) == 5 * MiB
    extra = mp.finish([1, 2])
    assert extra is not None and extra[0] == 3 and len(extra[1]) == 16

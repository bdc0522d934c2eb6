"""Every way decryption can fail raises the one opaque DecryptionError, with no plaintext."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig

from sse_guard.envelope import KmsKeyring, RawAesKeyring
from sse_guard.errors import DecryptionError

from .conftest import Harness, put_raw, raw_object

# Round trips, multipart and tampering also run on the strict tier, which verifies the
# request checksums of a replaced body and SSE-C keys (moto checks neither).
pytestmark = pytest.mark.strict_s3


def flip_b64(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def flip_body(body: bytes, index: int) -> bytes:
    b = bytearray(body)
    b[index] ^= 1
    return bytes(b)


TAMPERS = {
    "body": lambda b, m: (flip_body(b, 3), m),
    "tag": lambda b, m: (flip_body(b, len(b) - 1), m),
    "truncated": lambda b, m: (b[:-1], m),
    "extended": lambda b, m: (b + b"x", m),
    "message id": lambda b, m: (b, {**m, "x-amz-i": flip_b64(m["x-amz-i"])}),
    "commitment": lambda b, m: (b, {**m, "x-amz-d": flip_b64(m["x-amz-d"])}),
    "wrapped key": lambda b, m: (b, {**m, "x-amz-3": flip_b64(m["x-amz-3"])}),
    "context": lambda b, m: (b, {**m, "x-amz-t": '{"aws:x-amz-cek-alg":"115","team":"evil"}'}),
    "algorithm": lambda b, m: (b, {**m, "x-amz-c": "114"}),
    "wrap algorithm": lambda b, m: (b, {**m, "x-amz-w": "02"}),
    "mixed metadata": lambda b, m: (b, {**m, "x-amz-iv": "AAAAAAAAAAAAAAAA"}),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampered_v3_object_is_refused(harness: Harness, tamper: str) -> None:
    assert_tampered_get_is_refused(harness, tamper, 70_000)


def assert_tampered_get_is_refused(harness: Harness, tamper: str, size: int) -> None:
    harness.rule()
    harness.s3.put_object(Bucket=harness.bucket, Key="o", Body=os.urandom(size))
    body, metadata = raw_object(harness, "o")
    body, metadata = TAMPERS[tamper](body, metadata)
    put_raw(harness, "o", body, metadata)
    with pytest.raises(DecryptionError) as info:
        harness.s3.get_object(Bucket=harness.bucket, Key="o")
    assert str(info.value) == "client-side decryption failed"


@pytest.mark.parametrize("field", ["x-amz-iv", "x-amz-cek-alg", "x-amz-matdesc"])
def test_tampered_v2_field_is_refused(harness: Harness, field: str) -> None:
    harness.rule(format="v2")
    harness.s3.put_object(Bucket=harness.bucket, Key="o", Body=b"x" * 1000)
    body, metadata = raw_object(harness, "o")
    replacement = {
        "x-amz-iv": flip_b64(metadata["x-amz-iv"]),
        "x-amz-cek-alg": "AES/CBC/PKCS5Padding",
        "x-amz-matdesc": '{"aws:x-amz-cek-alg":"AES/GCM/NoPadding","a":"b"}',
    }[field]
    put_raw(harness, "o", body, {**metadata, field: replacement})
    with pytest.raises(DecryptionError):
        harness.s3.get_object(Bucket=harness.bucket, Key="o")


def test_metadata_swapped_between_two_objects_is_refused(harness: Harness) -> None:
    harness.rule()
    harness.s3.put_object(Bucket=harness.bucket, Key="a", Body=b"A" * 500)
    harness.s3.put_object(Bucket=harness.bucket, Key="b", Body=b"B" * 500)
    body_a, _ = raw_object(harness, "a")
    _, metadata_b = raw_object(harness, "b")
    put_raw(harness, "a", body_a, metadata_b)
    with pytest.raises(DecryptionError):
        harness.s3.get_object(Bucket=harness.bucket, Key="a")


def test_wrong_keyring_is_refused(harness: Harness) -> None:
    harness.rule(keyring=RawAesKeyring(os.urandom(32)))
    harness.s3.put_object(Bucket=harness.bucket, Key="a", Body=b"data")
    harness.rule(keyring=RawAesKeyring(os.urandom(32)))
    with pytest.raises(DecryptionError):
        harness.s3.get_object(Bucket=harness.bucket, Key="a")


def test_wrong_kms_key_is_refused(harness: Harness) -> None:
    harness.rule()
    harness.s3.put_object(Bucket=harness.bucket, Key="a", Body=b"data")
    other = harness.kms.create_key()["KeyMetadata"]["KeyId"]
    harness.rule(keyring=KmsKeyring(other, client=harness.kms))
    with pytest.raises(DecryptionError):
        harness.s3.get_object(Bucket=harness.bucket, Key="a")


def test_a_rule_with_a_different_context_is_refused(harness: Harness) -> None:
    harness.rule(context=(("team", "a"),))
    harness.s3.put_object(Bucket=harness.bucket, Key="a", Body=b"data")
    harness.rule(context=(("team", "b"),))
    with pytest.raises(DecryptionError):
        harness.s3.get_object(Bucket=harness.bucket, Key="a")


CONFIG = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)


@pytest.mark.parametrize("size", [1000, 12 * 1024 * 1024 + 5])
def test_download_file_writes_verified_plaintext(harness: Harness, tmp_path: Path, size: int) -> None:
    harness.rule()
    data = os.urandom(size)
    harness.s3.put_object(Bucket=harness.bucket, Key="d", Body=data)
    target = tmp_path / "out.bin"
    harness.s3.download_file(harness.bucket, "d", str(target), Config=CONFIG)
    assert target.read_bytes() == data


@pytest.mark.parametrize("size", [1000, 12 * 1024 * 1024 + 5])
def test_download_file_leaves_nothing_at_the_path_when_authentication_fails(
    harness: Harness, tmp_path: Path, size: int
) -> None:
    harness.rule()
    harness.s3.put_object(Bucket=harness.bucket, Key="d", Body=os.urandom(size))
    body, metadata = raw_object(harness, "d")
    put_raw(harness, "d", body[:-1] + bytes([body[-1] ^ 1]), metadata)
    target = tmp_path / "out.bin"
    with pytest.raises(DecryptionError):
        harness.s3.download_file(harness.bucket, "d", str(target), Config=CONFIG)
    assert list(tmp_path.iterdir()) == []


def test_ranged_get_without_the_opt_in_is_served_from_an_authenticated_decryption(harness: Harness) -> None:
    harness.rule()
    data = os.urandom(1000)
    harness.s3.put_object(Bucket=harness.bucket, Key="r", Body=data)
    got = harness.s3.get_object(Bucket=harness.bucket, Key="r", Range="bytes=10-99")
    assert got["Body"].read() == data[10:100]
    assert got["ContentRange"] == "bytes 10-99/1000"
    body, metadata = raw_object(harness, "r")
    put_raw(harness, "r", flip_body(body, 500), metadata)
    with pytest.raises(DecryptionError):
        harness.s3.get_object(Bucket=harness.bucket, Key="r", Range="bytes=10-99")


@pytest.mark.parametrize(
    ("first", "last"),
    [(0, 0), (0, 15), (15, 16), (17, 40), (990, 999), (990, 5000), (0, 999), (998, None), (16, None)],
)
def test_ranged_get_with_the_opt_in_uses_ctr_and_is_exact(
    harness: Harness, first: int, last: int | None
) -> None:
    harness.rule(unsafe_allow_ranged_get=True)
    data = os.urandom(1000)
    harness.s3.put_object(Bucket=harness.bucket, Key="r", Body=data)
    spec = f"bytes={first}-{'' if last is None else last}"
    got = harness.s3.get_object(Bucket=harness.bucket, Key="r", Range=spec)
    end = 999 if last is None else min(last, 999)
    assert got["Body"].read() == data[first : end + 1]
    assert got["ContentRange"] == f"bytes {first}-{end}/1000"


def test_ranged_get_past_the_end_is_invalid_range(harness: Harness) -> None:
    from botocore.exceptions import ClientError

    harness.rule(unsafe_allow_ranged_get=True)
    harness.s3.put_object(Bucket=harness.bucket, Key="r", Body=b"x" * 1000)
    with pytest.raises(ClientError, match="InvalidRange"):
        harness.s3.get_object(Bucket=harness.bucket, Key="r", Range="bytes=1005-1010")


def test_unauthenticated_streaming_is_opt_in_and_still_raises_at_the_end(harness: Harness) -> None:
    harness.rule(unsafe_unauthenticated_streaming=True)
    data = os.urandom(300_000)
    harness.s3.put_object(Bucket=harness.bucket, Key="s", Body=data)
    assert harness.s3.get_object(Bucket=harness.bucket, Key="s")["Body"].read() == data
    body, metadata = raw_object(harness, "s")
    put_raw(harness, "s", flip_body(body, len(body) - 1), metadata)
    stream = harness.s3.get_object(Bucket=harness.bucket, Key="s")["Body"]
    with pytest.raises(DecryptionError):
        stream.read()


def test_copy_object_keeps_the_object_decryptable(harness: Harness) -> None:
    harness.rule(instruction_file=True)
    harness.s3.put_object(Bucket=harness.bucket, Key="src", Body=b"copy me")
    harness.s3.copy_object(Bucket=harness.bucket, Key="dst", CopySource={"Bucket": harness.bucket, "Key": "src"})
    harness.s3.copy_object(
        Bucket=harness.bucket,
        Key="dst2",
        CopySource={"Bucket": harness.bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        Metadata={"note": "x"},
    )
    for key in ("dst", "dst2"):
        assert harness.s3.get_object(Bucket=harness.bucket, Key=key)["Body"].read() == b"copy me"


def test_managed_multipart_copy_keeps_the_tag(harness: Harness) -> None:
    harness.rule()
    data = os.urandom(11 * 1024 * 1024)
    harness.s3.put_object(Bucket=harness.bucket, Key="src", Body=data)
    harness.s3.copy({"Bucket": harness.bucket, "Key": "src"}, harness.bucket, "dst", Config=CONFIG)
    assert harness.s3.get_object(Bucket=harness.bucket, Key="dst")["Body"].read() == data




LARGE_TAMPERS = ["body", "tag", "truncated", "extended", "wrapped key", "commitment"]


@pytest.mark.parametrize("size", [3 * 1024 * 1024, 9 * 1024 * 1024 + 1])  # memory; temp file
@pytest.mark.parametrize("tamper", LARGE_TAMPERS)
def test_tampered_large_object_is_refused(harness: Harness, tamper: str, size: int) -> None:
    # Large bodies take the other path: the key is unwrapped while the body downloads.
    assert_tampered_get_is_refused(harness, tamper, size)


def test_wrong_keyring_is_refused_for_a_large_object(harness: Harness) -> None:
    harness.rule(keyring=RawAesKeyring(os.urandom(32)))
    harness.s3.put_object(Bucket=harness.bucket, Key="a", Body=os.urandom(3 * 1024 * 1024))
    harness.rule(keyring=RawAesKeyring(os.urandom(32)))
    with pytest.raises(DecryptionError):
        harness.s3.get_object(Bucket=harness.bucket, Key="a")


def test_a_connection_dropped_while_the_key_is_unwrapped_is_the_network_error(harness: Harness) -> None:
    import threading
    from dataclasses import dataclass
    from typing import Any

    from botocore.exceptions import IncompleteReadError

    dropped = threading.Event()

    class DropsAfterOneChunk:
        def __init__(self, body: Any) -> None:
            self._body, self._reads = body, 0

        def read(self, size: int = -1) -> bytes:
            self._reads += 1
            if self._reads > 1:
                dropped.set()
                raise IncompleteReadError(actual_bytes=0, expected_bytes=1)
            data: bytes = self._body.read(size)
            return data

        def close(self) -> None:
            self._body.close()

    @dataclass(frozen=True, eq=False)
    class UnwrapsAfterTheDrop:
        inner: RawAesKeyring

        def generate_data_key(self, **kwargs: Any) -> Any:
            return self.inner.generate_data_key(**kwargs)

        def wrap_data_key(self, plaintext: bytes, **kwargs: Any) -> Any:
            return self.inner.wrap_data_key(plaintext, **kwargs)

        def unwrap_data_key(self, header: Any, *, context: Any) -> bytes:
            assert dropped.wait(timeout=10)
            return self.inner.unwrap_data_key(header, context=context)

    raw = RawAesKeyring(os.urandom(32))
    harness.rule(keyring=raw)
    harness.s3.put_object(Bucket=harness.bucket, Key="d", Body=os.urandom(4 * 1024 * 1024))
    reader = harness.new_guarded_client()
    harness.rule(keyring=UnwrapsAfterTheDrop(raw))

    def break_body(parsed: dict[str, Any], **kwargs: Any) -> None:
        if "Body" in parsed:
            parsed["Body"] = DropsAfterOneChunk(parsed["Body"])

    reader.meta.events.register_first("after-call.s3.GetObject", break_body)
    with pytest.raises(IncompleteReadError):  # retryable, not DecryptionError
        reader.get_object(Bucket=harness.bucket, Key="d")
    assert dropped.is_set()


def test_the_tag_replaces_the_response_checksum(harness: Harness) -> None:
    from backends import Wire

    wire = Wire()
    wire.attach(harness.s3)
    harness.rule()
    harness.s3.put_object(Bucket=harness.bucket, Key="c", Body=b"c" * 5000)
    harness.s3.get_object(Bucket=harness.bucket, Key="c")["Body"].read()
    assert "x-amz-checksum-mode" not in wire.last("GetObject").headers
    harness.rule(unsafe_allow_plaintext=True)  # may read plaintext: keep the CRC
    harness.s3.get_object(Bucket=harness.bucket, Key="c")["Body"].read()
    assert wire.last("GetObject").headers["x-amz-checksum-mode"] == "ENABLED"
    # And an unguarded read of the same client's bucket keeps it too.
    plain = Wire()
    client = plain.attach(harness.plain_client())
    client.get_object(Bucket=harness.bucket, Key="c")["Body"].read()
    assert plain.last("GetObject").headers["x-amz-checksum-mode"] == "ENABLED"


@pytest.mark.parametrize("size", [70_000, 3 * 1024 * 1024, 9 * 1024 * 1024 + 1])
def test_a_body_corrupted_in_transit_is_a_decryption_error(harness: Harness, size: int) -> None:
    from typing import Any

    harness.rule()
    harness.s3.put_object(Bucket=harness.bucket, Key="t", Body=os.urandom(size))

    class FlipsOneByte:
        def __init__(self, body: Any) -> None:
            self._body, self._done = body, False

        def read(self, n: int = -1) -> bytes:
            data: bytes = self._body.read(n)
            if data and not self._done:
                self._done = True
                return bytes([data[0] ^ 1]) + data[1:]
            return data

        def close(self) -> None:
            self._body.close()

    def corrupt(parsed: dict[str, Any], **kwargs: Any) -> None:
        if "Body" in parsed:
            parsed["Body"] = FlipsOneByte(parsed["Body"])

    harness.s3.meta.events.register_first("after-call.s3.GetObject", corrupt, unique_id="corrupt")
    with pytest.raises(DecryptionError) as info:
        harness.s3.get_object(Bucket=harness.bucket, Key="t")
    assert str(info.value) == "client-side decryption failed"

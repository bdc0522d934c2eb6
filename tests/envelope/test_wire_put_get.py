"""PutObject and GetObject through the handlers, checked on the wire and in storage."""

from __future__ import annotations

import io
import os

import pytest

from sse_guard.envelope import RawAesKeyring
from sse_guard.errors import DecryptionError

from .conftest import Harness, raw_object

# Round trips, multipart and tampering also run on the strict tier, which verifies the
# request checksums of a replaced body and SSE-C keys (moto checks neither).
pytestmark = pytest.mark.strict_s3


def test_put_stores_ciphertext_with_v3_metadata_and_get_returns_plaintext(harness: Harness, wire: object) -> None:
    harness.rule()
    wire.attach(harness.s3)  # type: ignore[attr-defined]
    data = os.urandom(100_000)
    harness.s3.put_object(Bucket=harness.bucket, Key="a", Body=data, ContentMD5="bogus", ChecksumSHA256="bogus")
    sent = wire.one("PutObject")  # type: ignore[attr-defined]
    assert sent.headers["x-amz-meta-x-amz-c"] == "115"
    assert "content-md5" not in sent.headers
    assert "x-amz-checksum-sha256" not in sent.headers
    stored, metadata = raw_object(harness, "a")
    assert len(stored) == len(data) + 16
    assert data[:64] not in stored
    assert set(metadata) >= {"x-amz-c", "x-amz-3", "x-amz-w", "x-amz-d", "x-amz-i", "x-amz-t"}
    got = harness.s3.get_object(Bucket=harness.bucket, Key="a")
    assert got["ContentLength"] == len(data)
    assert got["Body"].read() == data
    head = harness.s3.head_object(Bucket=harness.bucket, Key="a")
    assert head["ContentLength"] == len(data)


@pytest.mark.parametrize("fmt", ["v3", "v2"])
@pytest.mark.parametrize("instruction_file", [False, True])
def test_round_trip_in_each_layout(harness: Harness, fmt: str, instruction_file: bool) -> None:
    harness.rule(format=fmt, instruction_file=instruction_file, context=(("team", "x"),))
    data = b"hello world" * 1000
    harness.s3.put_object(Bucket=harness.bucket, Key="k", Body=io.BytesIO(data))
    _, metadata = raw_object(harness, "k")
    if fmt == "v2" and instruction_file:
        assert metadata == {}
    if fmt == "v2" and not instruction_file:
        assert metadata["x-amz-tag-len"] == "128"
    assert harness.s3.get_object(Bucket=harness.bucket, Key="k")["Body"].read() == data


def test_non_seekable_body_is_spooled_and_encrypted(harness: Harness) -> None:
    harness.rule()

    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            return self._inner.readinto(b)

    data = os.urandom(300_000)
    harness.s3.put_object(Bucket=harness.bucket, Key="p", Body=Pipe(data))
    assert harness.s3.get_object(Bucket=harness.bucket, Key="p")["Body"].read() == data


def test_raw_aes_keyring_round_trip(harness: Harness) -> None:
    harness.rule(keyring=RawAesKeyring.of(os.urandom(32), material_description={"id": "1"}))
    harness.s3.put_object(Bucket=harness.bucket, Key="r", Body=b"secret")
    _, metadata = raw_object(harness, "r")
    assert metadata["x-amz-w"] == "02"
    assert harness.s3.get_object(Bucket=harness.bucket, Key="r")["Body"].read() == b"secret"


def test_plaintext_object_under_a_client_side_rule_is_refused(harness: Harness) -> None:
    harness.plain_client().put_object(Bucket=harness.bucket, Key="plain", Body=b"substituted")
    harness.rule()
    with pytest.raises(DecryptionError):
        harness.s3.get_object(Bucket=harness.bucket, Key="plain")


def test_plaintext_is_let_through_only_with_the_unsafe_opt_in(harness: Harness) -> None:
    harness.plain_client().put_object(Bucket=harness.bucket, Key="plain", Body=b"legacy data")
    harness.rule(unsafe_allow_plaintext=True)
    assert harness.s3.get_object(Bucket=harness.bucket, Key="plain")["Body"].read() == b"legacy data"


def test_empty_object_round_trips(harness: Harness) -> None:
    harness.rule()
    harness.s3.put_object(Bucket=harness.bucket, Key="e", Body=b"")
    assert len(raw_object(harness, "e")[0]) == 16
    assert harness.s3.get_object(Bucket=harness.bucket, Key="e")["Body"].read() == b""

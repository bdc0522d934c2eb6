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


# -- the key unwrap runs beside the download --------------------------------------------------

import threading  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

from sse_guard.envelope.format import EnvelopeHeader  # noqa: E402

MiB = 1024 * 1024


class _CountingBody:
    """The raw GetObject body, noting when its first bytes have been read."""

    def __init__(self, body: Any, first_read: threading.Event) -> None:
        self._body, self._first_read = body, first_read

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._body.read(size)
        self._first_read.set()
        return data

    def close(self) -> None:
        self._body.close()


@dataclass(frozen=True, eq=False)
class _WaitsForTheBody:
    """Unwraps only once the body is being read: a guard that unwrapped before reading
    would wait here until the timeout and fail."""

    inner: RawAesKeyring
    first_read: threading.Event
    seen: list[tuple[str, Any]] = field(default_factory=list)

    def generate_data_key(self, **kwargs: Any) -> Any:
        return self.inner.generate_data_key(**kwargs)

    def wrap_data_key(self, plaintext: bytes, **kwargs: Any) -> Any:
        return self.inner.wrap_data_key(plaintext, **kwargs)

    def unwrap_data_key(self, header: EnvelopeHeader, *, context: Any) -> bytes:
        started = self.first_read.wait(timeout=10)
        self.seen.append((threading.current_thread().name, started))
        if not started:
            raise RuntimeError("the body was not read while the key was unwrapped")
        return self.inner.unwrap_data_key(header, context=context)


def _count_body_reads(s3: Any) -> threading.Event:
    first_read = threading.Event()

    def wrap(parsed: dict[str, Any], **kwargs: Any) -> None:
        if "Body" in parsed:
            parsed["Body"] = _CountingBody(parsed["Body"], first_read)

    s3.meta.events.register_first("after-call.s3.GetObject", wrap)
    return first_read


@pytest.mark.parametrize("size", [3 * MiB, 9 * MiB + 3])  # in memory; spooled to a file
def test_a_large_get_unwraps_the_key_while_the_body_downloads(harness: Harness, size: int) -> None:
    raw = RawAesKeyring(os.urandom(32))
    harness.rule(keyring=raw)
    data = os.urandom(size)
    harness.s3.put_object(Bucket=harness.bucket, Key="big", Body=data)
    reader = harness.new_guarded_client()
    keyring = _WaitsForTheBody(raw, _count_body_reads(reader))
    harness.rule(keyring=keyring)
    assert reader.get_object(Bucket=harness.bucket, Key="big")["Body"].read() == data
    assert keyring.seen == [("sse-guard-unwrap", True)]


def test_a_small_get_unwraps_on_the_callers_thread(harness: Harness) -> None:
    raw = RawAesKeyring(os.urandom(32))
    harness.rule(keyring=raw)
    harness.s3.put_object(Bucket=harness.bucket, Key="small", Body=b"s" * 1000)
    first_read = threading.Event()
    first_read.set()  # a small body arrives with the headers: nothing to overlap
    keyring = _WaitsForTheBody(raw, first_read)
    harness.rule(keyring=keyring)
    assert harness.s3.get_object(Bucket=harness.bucket, Key="small")["Body"].read() == b"s" * 1000
    assert keyring.seen == [(threading.current_thread().name, True)]


def test_a_get_reads_memory_spool_ranges_and_positions(harness: Harness) -> None:
    harness.rule()
    data = os.urandom(2 * MiB + 7)
    harness.s3.put_object(Bucket=harness.bucket, Key="m", Body=data)
    body = harness.s3.get_object(Bucket=harness.bucket, Key="m")["Body"]
    assert body.read(10) == data[:10]
    assert body.read(MiB) == data[10 : MiB + 10]
    assert body.read() == data[MiB + 10 :]
    assert body.read() == b""
    body.close()
    ranged = harness.s3.get_object(Bucket=harness.bucket, Key="m", Range="bytes=100-199")
    assert ranged["Body"].read() == data[100:200]
    assert ranged["ContentRange"] == f"bytes 100-199/{len(data)}"

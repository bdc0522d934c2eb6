"""The GET spool: exact-size memory buffer, and a file spool that frees what was read."""

from __future__ import annotations

import io
import os
import sys
import tempfile

import pytest

from sse_guard.envelope.cipher import TAG_BYTES, ContentKey, decrypt_gcm_to_spool
from sse_guard.envelope.spool import (
    RELEASE_EVERY,
    SPOOL_MEMORY_LIMIT,
    ConsumingReader,
    MemorySpool,
    spool_pread,
)
from sse_guard.errors import DecryptionError

MiB = 1024 * 1024


def _encrypted(size: int) -> tuple[ContentKey, bytes, bytes]:
    content = ContentKey(os.urandom(32), os.urandom(12))
    data = os.urandom(size)
    enc = content.gcm_encryptor()
    whole = enc.update(data) + enc.finalize() + enc.tag
    return content, data, whole


@pytest.mark.parametrize("size", [0, 1, SPOOL_MEMORY_LIMIT])
def test_bodies_up_to_the_limit_decrypt_into_one_exact_buffer(size: int) -> None:
    content, data, whole = _encrypted(size)
    spool, n = decrypt_gcm_to_spool(io.BytesIO(whole).read, content, len(whole))
    assert isinstance(spool, MemorySpool) and n == size
    assert spool.read(7) == data[:7]
    assert spool_pread(spool, 5, 3) == data[3:8]
    assert spool.tell() == min(7, size)  # pread leaves the position alone
    assert spool.read() == data[7:]
    assert spool.read() == b""
    spool.seek(0)
    assert spool.read() == data
    spool.close()
    with pytest.raises(ValueError):
        spool_pread(spool, 1, 0)


def test_a_body_over_the_limit_goes_to_a_file() -> None:
    content, data, whole = _encrypted(SPOOL_MEMORY_LIMIT + 1)
    spool, _ = decrypt_gcm_to_spool(io.BytesIO(whole).read, content, len(whole))
    assert not isinstance(spool, MemorySpool)
    assert spool.read() == data
    spool.close()


@pytest.mark.parametrize("where", [0, MiB, -1])
def test_a_tampered_in_memory_body_releases_nothing(where: int) -> None:
    content, _, whole = _encrypted(2 * MiB)
    bad = bytearray(whole)
    bad[where] ^= 1
    with pytest.raises(DecryptionError):
        decrypt_gcm_to_spool(io.BytesIO(bytes(bad)).read, content, len(bad))


def test_a_truncated_in_memory_body_is_refused() -> None:
    content, _, whole = _encrypted(MiB)
    with pytest.raises(DecryptionError):
        decrypt_gcm_to_spool(io.BytesIO(whole[:-1]).read, content, len(whole))
    with pytest.raises(DecryptionError):
        decrypt_gcm_to_spool(io.BytesIO(whole[: TAG_BYTES - 1]).read, content, TAG_BYTES - 1)


def test_consuming_reader_returns_every_byte_in_any_chunking() -> None:
    data = os.urandom(3 * RELEASE_EVERY + 12345)
    spool = tempfile.TemporaryFile()  # noqa: SIM115 (the reader closes it)
    spool.write(data)
    spool.seek(0)
    reader = ConsumingReader(spool)
    got = bytearray()
    sizes = [1, MiB + 7, 3 * MiB, 5, RELEASE_EVERY + 1]
    i = 0
    while chunk := reader.read(sizes[i % len(sizes)]):
        got += chunk
        i += 1
    assert bytes(got) == data
    reader.close()
    assert spool.closed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="hole punching is Linux-only")
def test_consuming_reader_frees_what_was_read() -> None:
    spool = tempfile.TemporaryFile()  # noqa: SIM115 (the reader closes it)
    spool.write(os.urandom(4 * RELEASE_EVERY))
    spool.flush()
    spool.seek(0)
    before = os.fstat(spool.fileno()).st_blocks
    reader = ConsumingReader(spool)
    for _ in range(3 * RELEASE_EVERY // MiB):
        assert len(reader.read(MiB)) == MiB
    after = os.fstat(spool.fileno()).st_blocks
    if after == before:
        pytest.skip("this filesystem does not punch holes")
    assert after <= before * 0.3
    assert len(reader.read()) == RELEASE_EVERY  # the rest is intact
    reader.close()

"""Streaming content encryption and decryption: AES-256-GCM bodies in bounded memory.

Knows nothing of boto3. Everything works in chunks of :data:`CHUNK_SIZE` (1 MiB: fewer
trips through s3transfer's chain of readers than 64 KiB, at the same AES speed) through
buffers allocated once per stream (``update_into``), so a body of any size costs a few
MiB per stream in flight, plus what a GET spool keeps in memory before it goes to a
file (:data:`SPOOL_MEMORY_LIMIT`, see :mod:`.spool`).

GCM facts used here: the ciphertext has the plaintext's length and the 16-byte tag
follows it; with a 96-bit IV the keystream for byte offset ``o`` is AES-CTR under the
counter block ``IV || BE32(2 + o // 16)``. That is what lets a multipart part or a
byte range be recomputed without replaying the stream before it.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, cast

from cryptography.hazmat.primitives import constant_time, hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import EncryptionError
from ._errors import decryption_failure, translate_decryption_errors
from .spool import SPOOL_MEMORY_LIMIT, MemorySpool, RawReader, new_spool, resolve_seek

__all__ = [
    "CHUNK_SIZE",
    "GCM_MAX_PLAINTEXT",
    "READ_SIZE",
    "SPOOL_MEMORY_LIMIT",
    "TAG_BYTES",
    "V3_AAD",
    "V3_IV",
    "ContentKey",
    "CtrRangeReader",
    "EncryptingStream",
    "PlaintextSource",
    "UnauthenticatedReader",
    "ctr_at",
    "decrypt_cbc_to_spool",
    "decrypt_gcm_to_spool",
    "derive_v3",
    "verify_commitment",
]

CHUNK_SIZE = 1024 * 1024
TAG_BYTES = 16
BLOCK = 16
# NIST SP 800-38D: at most 2^39 - 256 bits of plaintext per (key, IV).
GCM_MAX_PLAINTEXT = (2**39 - 256) // 8

V3_IV = b"\x01" * 12
V3_AAD = b"\x00\x73"  # suite id 115, also the HKDF info prefix
_DERIVE_INFO = V3_AAD + b"DERIVEKEY"
_COMMIT_INFO = V3_AAD + b"COMMITKEY"


@dataclass(frozen=True)
class ContentKey:
    """The key, IV and AAD that encrypt one object's body.

    For V3 ``key`` is the derived DEK (the plaintext data key never encrypts content),
    the IV is fixed and the AAD is the suite id; for V2 it is the data key itself with
    a random IV and no AAD.
    """

    key: bytes = field(repr=False)
    iv: bytes
    aad: bytes = b""
    algorithm: str = "gcm"  # "gcm", or "cbc" for legacy objects

    def gcm_encryptor(self) -> Any:
        encryptor = Cipher(algorithms.AES(self.key), modes.GCM(self.iv)).encryptor()
        if self.aad:
            encryptor.authenticate_additional_data(self.aad)
        return encryptor

    def gcm_decryptor(self) -> Any:
        decryptor = Cipher(algorithms.AES(self.key), modes.GCM(self.iv)).decryptor()
        if self.aad:
            decryptor.authenticate_additional_data(self.aad)
        return decryptor


def derive_v3(data_key: bytes, message_id: bytes) -> tuple[bytes, bytes]:
    """V3 key derivation: ``(content key, key commitment)`` for a data key and message id.

    HKDF-SHA512 with the message id as salt; the two outputs use different info strings.
    """
    dek = HKDF(hashes.SHA512(), 32, salt=message_id, info=_DERIVE_INFO).derive(data_key)
    commitment = HKDF(hashes.SHA512(), 28, salt=message_id, info=_COMMIT_INFO).derive(data_key)
    return dek, commitment


def verify_commitment(expected: bytes, stored: bytes) -> None:
    if not constant_time.bytes_eq(expected, stored):
        decryption_failure()


def ctr_at(content: ContentKey, offset: int) -> CipherContext:
    """An AES-CTR context producing the GCM keystream from byte ``offset`` of the body."""
    if len(content.iv) != 12:
        raise ValueError("GCM keystream arithmetic needs a 96-bit IV")
    block, skip = divmod(offset, BLOCK)
    counter = content.iv + ((2 + block) % 2**32).to_bytes(4, "big")
    ctx = Cipher(algorithms.AES(content.key), modes.CTR(counter)).encryptor()
    if skip:
        ctx.update(bytes(skip))
    return ctx


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class PlaintextSource:
    """The caller's plaintext as a re-readable byte source of known size.

    ``bytes``/``str`` are used in place; a seekable file is read from its current
    position (``len()`` or seek-to-end gives the size); anything else is copied into a
    spooled temporary file first, so that a retry can read it again.
    """

    def __init__(self, body: Any, *, spool_limit: int = SPOOL_MEMORY_LIMIT) -> None:
        self._owned: IO[bytes] | None = None
        self._view: memoryview | None = None
        self._file: Any = None
        if body is None:
            body = b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        if isinstance(body, (bytes, bytearray, memoryview)):
            self._view = memoryview(body).cast("B")
            self.size = len(self._view)
            self._start = 0
            return
        if not hasattr(body, "read"):
            raise EncryptionError(f"cannot encrypt a body of type {type(body).__name__}")
        start, size = _seekable_extent(body)
        if start is None or size is None:
            spool = tempfile.SpooledTemporaryFile(max_size=spool_limit)  # noqa: SIM115
            total = 0
            while True:
                chunk = body.read(CHUNK_SIZE)
                if not chunk:
                    break
                if isinstance(chunk, str):
                    chunk = chunk.encode("utf-8")
                spool.write(chunk)
                total += len(chunk)
            spool.seek(0)
            self._owned = cast("IO[bytes]", spool)
            self._file = spool
            self._start, self.size = 0, total
        else:
            self._file = body
            self._start, self.size = start, size
        self._position = self._start

    @property
    def underlying(self) -> Any:
        return self._file

    def rewind(self) -> None:
        if self._file is not None:
            self._file.seek(self._start)

    def read_chunks(self, chunk_size: int = CHUNK_SIZE) -> Any:
        """Yield the plaintext from the start, in chunks of at most ``chunk_size``."""
        if self._view is not None:
            for i in range(0, self.size, chunk_size):
                yield self._view[i : i + chunk_size]
            return
        self.rewind()
        remaining = self.size
        while remaining > 0:
            chunk = self._file.read(min(chunk_size, remaining))
            if isinstance(chunk, str):
                chunk = chunk.encode("utf-8")
            if not chunk:
                raise EncryptionError("the body ended before its announced length")
            remaining -= len(chunk)
            yield chunk

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
            self._owned = None


def _seekable_extent(body: Any) -> tuple[int | None, int | None]:
    seekable = getattr(body, "seekable", None)
    try:
        if seekable is not None and not seekable():
            return None, None
        start = body.tell()
        body.seek(0, io.SEEK_END)
        end = body.tell()
        body.seek(start)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None, None
    if not isinstance(start, int) or not isinstance(end, int) or end < start:
        return None, None
    return start, end - start


class EncryptingStream(RawReader):
    """A seekable, readable view of ``encrypt(plaintext) || trailer``.

    Reading produces ciphertext chunk by chunk; seeking back (a retry, a checksum pass)
    restarts the cipher and replays byte-identical output, because the cipher is a pure
    function of the key, IV and plaintext. ``len()`` is known before the first read.

    Two shapes: a whole GCM object (``make_cipher`` returns a GCM encryptor and the
    trailer is its tag) or one part of a larger GCM stream (``make_cipher`` returns
    AES-CTR at the part's offset and the trailer is fixed: the tag or nothing).
    """

    def __init__(
        self,
        source: PlaintextSource,
        make_cipher: Callable[[], Any],
        *,
        tag_from_cipher: bool,
        trailer: bytes = b"",
    ) -> None:
        super().__init__()
        self._source = source
        self._make_cipher = make_cipher
        self._tag_from_cipher = tag_from_cipher
        self._fixed_trailer = trailer
        self._trailer_len = TAG_BYTES if tag_from_cipher else len(trailer)
        self._length = source.size + self._trailer_len
        self._out = bytearray(CHUNK_SIZE + BLOCK)
        self._out_view = memoryview(self._out)
        self._pos = 0  # what the caller asked for (seek/tell)
        self._produced = 0  # how far the cipher has produced
        self._pending = memoryview(b"")
        self._chunks: Any = None
        self._cipher: Any = None

    def __len__(self) -> int:
        return self._length

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        # Seeking is free; the cipher catches up (or restarts) on the next read.
        self._pos = resolve_seek(offset, whence, self._pos, self._length)
        return self._pos

    def _restart(self) -> None:
        self._cipher = self._make_cipher()
        self._chunks = self._source.read_chunks()
        self._produced = 0
        self._pending = memoryview(b"")

    def _produce(self) -> bool:
        """Make the next piece of output the ``_pending`` one; False at the end."""
        if self._chunks is None:
            return False
        for chunk in self._chunks:
            n = self._cipher.update_into(chunk, self._out)
            self._pending = self._out_view[:n]
            self._produced += n
            return True
        self._chunks = None
        if self._tag_from_cipher:
            self._cipher.finalize()
            trailer = bytes(self._cipher.tag)
        else:
            trailer = self._fixed_trailer
        self._pending = memoryview(trailer)
        self._produced += len(trailer)
        return bool(trailer)

    def _catch_up(self) -> None:
        """Bring the cipher to the caller's position: restart if behind, skip if ahead."""
        start = self._produced - len(self._pending)
        if self._cipher is None or self._pos < start:
            self._restart()
        while self._pos >= self._produced and self._produced < self._length:
            if not self._produce():
                break
        start = self._produced - len(self._pending)
        if self._pos > start:
            self._pending = self._pending[self._pos - start :]

    def read(self, size: int | None = -1) -> bytes:
        if self._pos >= self._length:
            return b""
        self._catch_up()
        if size is None or size < 0:
            size = self._length - self._pos
        pieces: list[bytes] = []
        remaining = size
        while remaining > 0:
            if not self._pending and not self._produce():
                break
            n = min(remaining, len(self._pending))
            pieces.append(bytes(self._pending[:n]))
            self._pending = self._pending[n:]
            remaining -= n
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self._pos += len(data)
        return data

    # s3transfer toggles progress callbacks on the body it handed to botocore; pass the
    # signal to its ReadFileChunk underneath so progress is still reported.
    def signal_transferring(self) -> None:
        fn = getattr(self._source.underlying, "signal_transferring", None)
        if fn is not None:
            fn()

    def signal_not_transferring(self) -> None:
        fn = getattr(self._source.underlying, "signal_not_transferring", None)
        if fn is not None:
            fn()

    def close(self) -> None:
        self._source.close()
        super().close()


READ_SIZE = 1024 * 1024


def _read_exact(read: Callable[[int], bytes], total: int, sink: Callable[[bytes], None]) -> None:
    remaining = total
    while remaining > 0:
        chunk = read(min(READ_SIZE, remaining))
        if not chunk:
            decryption_failure()  # truncated
        remaining -= len(chunk)
        sink(chunk)


def _ensure_drained(read: Callable[[int], bytes]) -> None:
    if read(1):
        decryption_failure()  # longer than announced


def decrypt_gcm_to_spool(
    read: Callable[[int], bytes],
    content: ContentKey,
    ciphertext_length: int,
    *,
    spool_factory: Callable[[int], IO[bytes]] = new_spool,
) -> tuple[IO[bytes], int]:
    """Decrypt and authenticate a whole GCM body; return (spool at 0, plaintext length).

    Nothing is returned unless the tag verifies; the spool is discarded otherwise.
    ``ciphertext_length`` is the object's length including the tag.
    """
    if ciphertext_length < TAG_BYTES:
        decryption_failure()
    body_length = ciphertext_length - TAG_BYTES
    in_memory = spool_factory is new_spool and body_length <= SPOOL_MEMORY_LIMIT
    spool = MemorySpool(body_length) if in_memory else spool_factory(body_length)
    try:
        with translate_decryption_errors():
            decryptor = content.gcm_decryptor()
            if isinstance(spool, MemorySpool):
                sink = _decrypt_in_place(decryptor, spool)
            else:
                sink = _decrypt_through_buffer(decryptor, spool)
            _read_exact(read, body_length, sink)
            held = bytearray()
            _read_exact(read, TAG_BYTES, held.extend)
            _ensure_drained(read)
            decryptor.finalize_with_tag(bytes(held))
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return cast("IO[bytes]", spool), body_length


def _decrypt_in_place(decryptor: Any, spool: MemorySpool) -> Callable[[bytes], None]:
    written = 0

    def sink(chunk: bytes) -> None:
        nonlocal written
        written += decryptor.update_into(chunk, spool.window(written))

    return sink


def _decrypt_through_buffer(decryptor: Any, spool: IO[bytes]) -> Callable[[bytes], None]:
    # One update_into and one write per read: the spool's writes, not AES, were the
    # cost of a large GET.
    out = bytearray(READ_SIZE + BLOCK)
    out_view = memoryview(out)

    def sink(chunk: bytes) -> None:
        nonlocal out, out_view
        if len(chunk) + BLOCK > len(out):
            out = bytearray(len(chunk) + BLOCK)
            out_view = memoryview(out)
        n = decryptor.update_into(chunk, out)
        spool.write(out_view[:n])

    return sink


def decrypt_cbc_to_spool(
    read: Callable[[int], bytes], content: ContentKey, ciphertext_length: int
) -> tuple[IO[bytes], int]:
    """Legacy AES-CBC/PKCS#7 body (unauthenticated: only behind ``unsafe_allow_legacy``)."""
    if ciphertext_length <= 0 or ciphertext_length % BLOCK:
        decryption_failure()
    spool = new_spool()
    try:
        with translate_decryption_errors():
            decryptor = Cipher(algorithms.AES(content.key), modes.CBC(content.iv)).decryptor()
            unpadder = padding.PKCS7(128).unpadder()
            written = 0

            def sink(chunk: bytes) -> None:
                nonlocal written
                data = unpadder.update(decryptor.update(chunk))
                written += len(data)
                spool.write(data)

            _read_exact(read, ciphertext_length, sink)
            _ensure_drained(read)
            tail = unpadder.update(decryptor.finalize()) + unpadder.finalize()
            written += len(tail)
            spool.write(tail)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, written


class UnauthenticatedReader(RawReader):
    """Releases GCM plaintext as it arrives and checks the tag only at the end.

    Only for ``unsafe_unauthenticated_streaming``: a tampered object yields plaintext an
    attacker chose before the final read raises ``DecryptionError``.
    """

    def __init__(
        self, read: Callable[[int], bytes], content: ContentKey, ciphertext_length: int
    ) -> None:
        super().__init__()
        if ciphertext_length < TAG_BYTES:
            decryption_failure()
        self._read = read
        self._remaining = ciphertext_length - TAG_BYTES
        self.plaintext_length = self._remaining
        with translate_decryption_errors():
            self._decryptor = content.gcm_decryptor()
        self._finished = False

    def read(self, size: int | None = -1) -> bytes:
        if self._finished:
            return b""
        want = self._remaining if size is None or size < 0 else min(size, self._remaining)
        with translate_decryption_errors():
            pieces = []
            while want > 0:
                chunk = self._read(min(want, CHUNK_SIZE * 16))
                if not chunk:
                    decryption_failure()
                want -= len(chunk)
                self._remaining -= len(chunk)
                pieces.append(self._decryptor.update(chunk))
            if self._remaining == 0:
                held = bytearray()
                _read_exact(self._read, TAG_BYTES, held.extend)
                _ensure_drained(self._read)
                self._finished = True
                self._decryptor.finalize_with_tag(bytes(held))
        return b"".join(pieces)


class CtrRangeReader(RawReader):
    """Decrypts a block-aligned byte range of a GCM body with AES-CTR (unauthenticated).

    Only for ``unsafe_allow_ranged_get``. ``wire_start`` is a multiple of 16; the first
    ``skip`` plaintext bytes (the widening) and everything past ``keep`` bytes (more
    widening, or the tag) are dropped.
    """

    def __init__(
        self,
        read: Callable[[int], bytes],
        content: ContentKey,
        *,
        wire_start: int,
        wire_length: int,
        skip: int,
        keep: int,
    ) -> None:
        super().__init__()
        if wire_start % BLOCK:
            raise ValueError("a wire range must start on a block boundary")
        self._read = read
        self._ctx = ctr_at(content, wire_start)
        self._wire_left = wire_length
        self._skip = skip
        self._keep = keep

    def read(self, size: int | None = -1) -> bytes:
        want = self._keep if size is None or size < 0 else min(size, self._keep)
        pieces = []
        with translate_decryption_errors():
            while want > 0:
                if self._wire_left <= 0:
                    decryption_failure()
                chunk = self._read(min(self._wire_left, max(want + self._skip, CHUNK_SIZE)))
                if not chunk:
                    decryption_failure()
                self._wire_left -= len(chunk)
                plain = self._ctx.update(chunk)
                if self._skip:
                    dropped = min(self._skip, len(plain))
                    plain, self._skip = plain[dropped:], self._skip - dropped
                plain = plain[: self._keep]
                self._keep -= len(plain)
                want -= len(plain)
                pieces.append(plain)
        return b"".join(pieces)


def new_message_id(random: Callable[[int], bytes] = os.urandom) -> bytes:
    return random(28)

"""One GCM stream across the parts of a multipart upload.

The stored object must be ``ciphertext(part 1) || ... || ciphertext(part N) || tag``.
GCM's authentication state must absorb the parts in order, exactly once, while the
uploads themselves may run concurrently and be retried. So each part is first absorbed
into the one GCM encryptor (its ciphertext is discarded), strictly in part order; the
bytes sent on the wire are then AES-CTR at the part's offset, which is the same GCM
ciphertext and can be replayed on a retry without touching the GCM state.

Where the tag goes: into the last part, when that part is known to be the last: it
ends at the upload's announced plaintext length (the transfer wrapper knows the file's
size), or it is smaller than S3's 5 MiB minimum (S3 rejects smaller parts that are not
last). Otherwise the tag becomes an extra 16-byte part added at completion.

The absorbing pass sees every ciphertext byte of a part, so it can also feed a digest
of them: the part's wire checksum then needs no third pass over the data.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from ..errors import EncryptionError
from .cipher import (
    BLOCK,
    CHUNK_SIZE,
    GCM_MAX_PLAINTEXT,
    ContentKey,
    EncryptingStream,
    PlaintextSource,
    ctr_at,
)

__all__ = ["S3_MIN_PART", "Digest", "MultipartEncryption"]

S3_MIN_PART = 5 * 1024 * 1024


class Digest(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


class MultipartEncryption:
    """The GCM state of one multipart upload, shared by the threads uploading its parts."""

    def __init__(
        self,
        content: ContentKey,
        *,
        order_timeout: float = 60.0,
        min_part: int = S3_MIN_PART,
        plaintext_length: int | None = None,
    ) -> None:
        self._min_part = min_part
        self._announced = plaintext_length
        self._content = content
        self._encryptor = content.gcm_encryptor()
        self._cond = threading.Condition()
        self._next_part = 1
        self._offset = 0
        self._parts: dict[int, tuple[int, int]] = {}
        self._tag: bytes | None = None
        self._tag_in_part: int | None = None
        self._failure: str | None = None
        self._order_timeout = order_timeout

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def fail(self, reason: str) -> None:
        with self._cond:
            if self._failure is None:
                self._failure = reason
            self._cond.notify_all()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise EncryptionError(f"client-side multipart upload cannot continue: {self._failure}")

    def encrypt_part(self, part_number: int, body: Any, digest: Digest | None = None) -> EncryptingStream:
        """The encrypting body for ``part_number``; waits until the previous part is absorbed.

        ``digest``, if given, is fed exactly the bytes the returned body will produce.
        """
        source = PlaintextSource(body)
        with self._cond:
            if part_number < self._next_part:
                self._failure = self._failure or f"part {part_number} was sent twice"
                self._cond.notify_all()
                self._raise_if_failed()
            # The wait is for progress, not for a total: part N-1 is running already
            # (s3transfer hands parts to its workers in order), so only an upload that
            # stopped moving, or a caller skipping a part, waits this long.
            while self._next_part != part_number and self._failure is None:
                seen = self._next_part
                if not self._cond.wait(self._order_timeout) and self._next_part == seen:
                    self._failure = (
                        f"part {part_number} arrived but part {self._next_part} never did "
                        "(client-side encryption needs the parts in order)"
                    )
                    self._cond.notify_all()
            self._raise_if_failed()
            if self._tag is not None:
                self._failure = f"part {part_number} came after the final part"
                self._cond.notify_all()
                self._raise_if_failed()
            offset = self._offset
            if offset + source.size > GCM_MAX_PLAINTEXT:
                self._failure = "the object exceeds AES-GCM's 64 GiB limit"
                self._cond.notify_all()
                self._raise_if_failed()
            try:
                self._absorb(source, digest)
            except BaseException as exc:
                self._failure = f"part {part_number} could not be read ({type(exc).__name__})"
                self._cond.notify_all()
                raise
            end = offset + source.size
            final = source.size < self._min_part or (
                self._announced is not None and end >= self._announced
            )
            trailer = b""
            if final:
                self._encryptor.finalize()
                self._tag = trailer = bytes(self._encryptor.tag)
                self._tag_in_part = part_number
                if digest is not None:
                    digest.update(trailer)
            self._parts[part_number] = (offset, source.size)
            self._offset += source.size
            self._next_part += 1
            self._cond.notify_all()
        content = self._content
        return EncryptingStream(
            source, lambda: ctr_at(content, offset), tag_from_cipher=False, trailer=trailer
        )

    def _absorb(self, source: PlaintextSource, digest: Digest | None) -> None:
        sink = bytearray(CHUNK_SIZE + BLOCK)
        view = memoryview(sink)
        for chunk in source.read_chunks():
            n = self._encryptor.update_into(chunk, sink)
            if digest is not None:
                digest.update(view[:n])

    def finish(self, listed_parts: Sequence[int]) -> tuple[int, bytes] | None:
        """Check the parts named by CompleteMultipartUpload; the tag part to add, if any.

        Returns ``(part number, tag)`` when the tag still has to be uploaded as an extra
        part, ``None`` when it already travelled with the final part.
        """
        with self._cond:
            self._raise_if_failed()
            if sorted(listed_parts) != sorted(self._parts) or sorted(self._parts) != list(
                range(1, len(self._parts) + 1)
            ):
                self._failure = "the completed part list is not every encrypted part in order"
                self._raise_if_failed()
            if self._tag is not None:
                return None
            self._encryptor.finalize()
            self._tag = bytes(self._encryptor.tag)
            number = len(self._parts) + 1
            self._tag_in_part = number
            return number, self._tag

    @property
    def plaintext_length(self) -> int:
        return self._offset

"""Where an authenticated GET keeps its plaintext until the tag has been checked.

Up to :data:`SPOOL_MEMORY_LIMIT` in one buffer that the cipher writes into; above it, an
anonymous temporary file. A file spool read once from start to end (a whole-object GET)
gives its pages back as they are consumed, so the page cache never holds the whole
plaintext twice (spool and the caller's own copy) and consumed plaintext does not linger
in it. Knows nothing of boto3.
"""

from __future__ import annotations

import ctypes
import io
import os
import sys
import tempfile
from typing import IO, Any, cast

__all__ = [
    "SPOOL_MEMORY_LIMIT",
    "ConsumingReader",
    "MemorySpool",
    "RawReader",
    "new_spool",
    "resolve_seek",
    "spool_pread",
]

# Decrypted output is kept in memory up to this size, then goes to a temp file.
SPOOL_MEMORY_LIMIT = 8 * 1024 * 1024
BLOCK = 16
# How much consumed plaintext a ConsumingReader lets accumulate before freeing it.
RELEASE_EVERY = 8 * 1024 * 1024


class RawReader(io.RawIOBase):
    """A readable raw stream whose ``readinto`` is its ``read``."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def resolve_seek(offset: int, whence: int, position: int, length: int) -> int:
    """The absolute position a ``seek(offset, whence)`` asks for."""
    bases = {io.SEEK_SET: 0, io.SEEK_CUR: position, io.SEEK_END: length}
    if whence not in bases:
        raise ValueError(f"invalid whence {whence}")
    target = bases[whence] + offset
    if target < 0:
        raise ValueError("negative seek position")
    return target


def new_spool(size_hint: int = 0) -> IO[bytes]:
    # A body known to outgrow memory goes straight to disk: rolling over would copy the
    # first SPOOL_MEMORY_LIMIT bytes once more.
    if size_hint > SPOOL_MEMORY_LIMIT:
        return tempfile.TemporaryFile()
    return cast("IO[bytes]", tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_LIMIT))


class MemorySpool(RawReader):
    """A verified plaintext of known size held in one buffer that the cipher writes into.

    Decrypting straight into place saves the copy a BytesIO would make on write and
    its reallocations while it grows. ``pread`` serves ranged readers without moving
    the shared position.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        # update_into wants room for one more block than its input.
        self._buffer = bytearray(size + BLOCK)
        self._view = memoryview(self._buffer)
        self._size = size
        self._pos = 0

    def window(self, offset: int) -> memoryview:
        """Where the cipher writes the plaintext that starts at ``offset``."""
        return self._view[offset:]

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = resolve_seek(offset, whence, self._pos, self._size)
        return self._pos

    def pread(self, size: int, offset: int) -> bytes:
        if self.closed:
            raise ValueError("read of a closed spool")
        end = min(self._size, offset + max(size, 0))
        return bytes(self._view[offset:end]) if end > offset else b""

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._pos
        data = self.pread(size, self._pos)
        self._pos += len(data)
        return data

    def close(self) -> None:
        if not self.closed:
            self._view.release()
            self._buffer = bytearray()
        super().close()


def spool_pread(spool: IO[bytes], size: int, offset: int) -> bytes:
    """``size`` bytes of a spool at ``offset``, leaving its position alone."""
    if isinstance(spool, MemorySpool):
        return spool.pread(size, offset)
    return os.pread(spool.fileno(), size, offset)




class ConsumingReader(RawReader):
    """Reads a file spool once, front to back, freeing what has been read (Linux).

    Freeing punches a hole in the anonymous file (``fallocate``); where that is not
    available the pages simply stay until the spool is closed, as before.
    """

    def __init__(self, spool: IO[bytes]) -> None:
        super().__init__()
        self._spool = spool
        self._read = 0
        self._released = 0

    def read(self, size: int | None = -1) -> bytes:
        data = self._spool.read(-1 if size is None else size)
        self._read += len(data)
        if self._read - self._released >= RELEASE_EVERY:
            _punch_hole(self._spool, self._released, self._read - self._released)
            self._released = self._read
        return data

    def close(self) -> None:
        if not self.closed:
            self._spool.close()
        super().close()


_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


def _load_fallocate() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = getattr(libc, "fallocate64", None) or libc.fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    fn.restype = ctypes.c_int
    return fn


_fallocate = _load_fallocate()


def _punch_hole(spool: IO[bytes], offset: int, length: int) -> None:
    global _fallocate
    if _fallocate is None:
        return
    try:
        fd = spool.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return
    if _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        _fallocate = None  # this filesystem cannot: stop trying

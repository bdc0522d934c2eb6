"""The one place where foreign failures become sse_guard's opaque errors.

Every decryption failure, whatever its cause (a bad tag, a KMS refusal, a malformed
metadata value), leaves as one ``DecryptionError`` with the same message, so that nothing
tells an attacker which check failed. The original exception stays on ``__cause__`` for
whoever debugs with the process in hand; it never contains key material.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from ..errors import ConfigurationError, DecryptionError

__all__ = ["DECRYPTION_FAILED", "TransportFault", "decryption_failure", "translate_decryption_errors"]

DECRYPTION_FAILED = "client-side decryption failed"


def decryption_failure(cause: BaseException | None = None) -> NoReturn:
    """Raise the opaque error, chained to ``cause``."""
    raise DecryptionError(DECRYPTION_FAILED) from cause


class TransportFault(Exception):
    """The connection failed while the body was read: not a fact about the object.

    Carried through the crypto core unchanged, so the handler can re-raise the original
    network error (which s3transfer and callers retry) instead of ``DecryptionError``.
    A truncated *stored* object still fails its tag: the connection delivers all of it.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


@contextmanager
def translate_decryption_errors() -> Iterator[None]:
    """Turn any failure inside the block into the opaque ``DecryptionError``.

    sse_guard's own ``DecryptionError`` passes through unchanged; its configuration
    errors (a keyring that cannot be used at all) pass through too, since they describe
    the caller's setup, not the object.
    """
    try:
        yield
    except (DecryptionError, ConfigurationError, TransportFault):
        raise
    except Exception as exc:
        decryption_failure(exc)

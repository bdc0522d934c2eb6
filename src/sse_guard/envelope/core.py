"""Envelope recipes: settings + keyring + format + cipher, still without boto3.

:func:`seal` makes the data key, content key and header for a new object;
:func:`open_header` checks a stored header against the rule (commitment policy, legacy
opt-in, encryption context, key commitment) and returns the content key. Both take the
rule as a ``ClientSide`` settings value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import ConfigurationError
from ..settings import ClientSide
from ._errors import decryption_failure
from .cipher import V3_AAD, V3_IV, ContentKey, derive_v3, verify_commitment
from .format import V2_CEK, V3_SUITE, EnvelopeHeader
from .keyrings import Keyring

__all__ = ["Sealed", "may_read", "open_header", "rewrap_header", "seal", "write_format"]


@dataclass(frozen=True)
class Sealed:
    """What encrypting one object needs: how to encrypt the body and what to store."""

    content: ContentKey
    header: EnvelopeHeader


def write_format(settings: ClientSide) -> str:
    """``"v3"`` or ``"v2"``: the commitment policy can only lower a rule's format to V2."""
    if settings.commitment_policy == "forbid-encrypt-allow-decrypt":
        return "v2"
    if settings.format not in ("v3", "v2"):
        raise ConfigurationError(f"client-side format must be v3 or v2, not {settings.format!r}")
    return settings.format


def may_read(settings: ClientSide, header: EnvelopeHeader) -> bool:
    """Whether the rule allows reading an object in ``header``'s format at all.

    V3 always; V2 when the commitment policy allows non-committing decryption or the
    rule itself writes V2; legacy formats (CBC, ``kms`` wrap, V1) only with
    ``unsafe_allow_legacy``.
    """
    if header.is_legacy:
        return settings.unsafe_allow_legacy
    if header.version == "v3":
        return True
    return (
        settings.commitment_policy != "require-encrypt-require-decrypt"
        or write_format(settings) == "v2"
        or settings.unsafe_allow_legacy
    )


def _keyring(settings: ClientSide) -> Keyring:
    return settings.keyring


def seal(settings: ClientSide, *, random: Callable[[int], bytes] = os.urandom) -> Sealed:
    """A fresh data key, wrapped by the rule's keyring, and the header to store."""
    fmt = write_format(settings)
    context = settings.encryption_context
    if fmt == "v3":
        data_key = _keyring(settings).generate_data_key(cek_algorithm=V3_SUITE, context=context)
        message_id = random(28)
        dek, commitment = derive_v3(data_key.plaintext, message_id)
        header = EnvelopeHeader(
            version="v3",
            cek_algorithm=V3_SUITE,
            wrap_algorithm=data_key.wrap_algorithm,
            encrypted_key=data_key.encrypted,
            description=data_key.description,
            message_id=message_id,
            commitment=commitment,
        )
        return Sealed(ContentKey(dek, V3_IV, V3_AAD), header)
    data_key = _keyring(settings).generate_data_key(cek_algorithm=V2_CEK, context=context)
    iv = random(12)
    header = EnvelopeHeader(
        version="v2",
        cek_algorithm=V2_CEK,
        wrap_algorithm=data_key.wrap_algorithm,
        encrypted_key=data_key.encrypted,
        description=data_key.description,
        iv=iv,
    )
    return Sealed(ContentKey(data_key.plaintext, iv), header)


def _content_key(header: EnvelopeHeader, data_key: bytes) -> ContentKey:
    if header.version == "v3":
        assert header.message_id is not None
        assert header.commitment is not None
        dek, commitment = derive_v3(data_key, header.message_id)
        verify_commitment(commitment, header.commitment)
        return ContentKey(dek, V3_IV, V3_AAD)
    assert header.iv is not None
    if header.is_gcm:
        return ContentKey(data_key, header.iv)
    return ContentKey(data_key, header.iv, algorithm="cbc")


def open_header(settings: ClientSide, header: EnvelopeHeader) -> ContentKey:
    """Unwrap and check an object's data key under the rule; the content key to decrypt.

    Raises the opaque ``DecryptionError`` for every refusal, including a format the
    rule does not allow.
    """
    return _content_key(header, _unwrap(settings, header))


def _unwrap(settings: ClientSide, header: EnvelopeHeader) -> bytes:
    if not may_read(settings, header):
        decryption_failure()
    return _keyring(settings).unwrap_data_key(header, context=settings.encryption_context)


def rewrap_header(
    header: EnvelopeHeader,
    *,
    old: ClientSide,
    new_keyring: Keyring,
    new_context: Mapping[str, str] | None = None,
) -> EnvelopeHeader:
    """The same object's header with its data key wrapped by ``new_keyring``.

    The data key, and therefore the body, the IV, the message id and the commitment,
    are unchanged: this is key rotation without touching the data.
    """
    data_key = _unwrap(old, header)
    _content_key(header, data_key)  # a V3 header whose commitment fails is not rotated
    context = dict(old.encryption_context if new_context is None else new_context)
    wrapped = new_keyring.wrap_data_key(data_key, cek_algorithm=header.cek_algorithm, context=context)
    return EnvelopeHeader(
        version=header.version,
        cek_algorithm=header.cek_algorithm,
        wrap_algorithm=wrapped.wrap_algorithm,
        encrypted_key=wrapped.encrypted,
        description=wrapped.description,
        iv=header.iv,
        message_id=header.message_id,
        commitment=header.commitment,
    )

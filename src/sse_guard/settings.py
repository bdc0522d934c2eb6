"""Encryption settings: small frozen values, and their translation to S3 request parameters.

Pure: no I/O, no boto3. ``to_request_params`` is the one place that knows which S3
parameters express which encryption.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Union

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .envelope.keyrings import Keyring

__all__ = [
    "DSSEKMS",
    "FOLLOW_BUCKET",
    "SSEC",
    "SSEKMS",
    "SSES3",
    "ClientSide",
    "CommitmentPolicy",
    "Encryption",
    "FollowBucket",
    "ServerSide",
]


def _freeze(context: Mapping[str, str] | None) -> tuple[tuple[str, str], ...] | None:
    if context is None:
        return None
    for k, v in context.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ConfigurationError("encryption context keys and values must be strings")
    return tuple(sorted(context.items()))


@dataclass(frozen=True)
class SSES3:
    """SSE-S3: S3-managed keys (``AES256``)."""

    label = "SSE-S3"

    def describe(self) -> str:
        return "SSE-S3 (AES256)"


@dataclass(frozen=True)
class SSEKMS:
    """SSE-KMS (``aws:kms``). ``key_id`` None means the AWS managed key ``aws/s3``."""

    key_id: str | None = None
    bucket_key: bool | None = None
    context: tuple[tuple[str, str], ...] | None = None

    label = "SSE-KMS"

    @classmethod
    def of(
        cls,
        key_id: str | None = None,
        *,
        bucket_key: bool | None = None,
        encryption_context: Mapping[str, str] | None = None,
    ) -> SSEKMS:
        return cls(key_id=key_id, bucket_key=bucket_key, context=_freeze(encryption_context))

    def describe(self) -> str:
        return f"SSE-KMS (key {self.key_id or 'aws/s3'})"


@dataclass(frozen=True)
class DSSEKMS:
    """DSSE-KMS (``aws:kms:dsse``): two layers of server-side encryption under a KMS key."""

    key_id: str | None = None
    context: tuple[tuple[str, str], ...] | None = None

    label = "DSSE-KMS"

    @classmethod
    def of(
        cls, key_id: str | None = None, *, encryption_context: Mapping[str, str] | None = None
    ) -> DSSEKMS:
        return cls(key_id=key_id, context=_freeze(encryption_context))

    def describe(self) -> str:
        return f"DSSE-KMS (key {self.key_id or 'aws/s3'})"


@dataclass(frozen=True)
class SSEC:
    """SSE-C: a 256-bit key the caller supplies on every request for the object.

    The key never appears in ``repr``; ``key_md5`` identifies it without revealing it.
    """

    key: bytes = field(repr=False)

    label = "SSE-C"

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != 32:
            raise ConfigurationError("an SSE-C key must be exactly 32 bytes")

    @property
    def key_md5(self) -> str:
        # S3 wants the MD5 of the key: an identifier, not a security primitive here.
        return base64.b64encode(hashlib.md5(self.key, usedforsecurity=False).digest()).decode()

    def describe(self) -> str:
        return f"SSE-C (key md5 {self.key_md5})"


CommitmentPolicy = Literal[
    "require-encrypt-require-decrypt",
    "require-encrypt-allow-decrypt",
    "forbid-encrypt-allow-decrypt",
]


@dataclass(frozen=True)
class ClientSide:
    """Client-side envelope encryption in the Amazon S3 Encryption Client's format.

    The unsafe options are named so: each lets through something an attacker with write
    access to the bucket could exploit, and exists only for migrations.
    """

    keyring: Keyring
    format: Literal["v3", "v2"] = "v3"
    context: tuple[tuple[str, str], ...] = ()
    instruction_file: bool = False
    commitment_policy: CommitmentPolicy = "require-encrypt-require-decrypt"
    unsafe_allow_legacy: bool = False
    unsafe_allow_plaintext: bool = False
    unsafe_allow_ranged_get: bool = False
    unsafe_unauthenticated_streaming: bool = False

    label = "CLIENT-SIDE"

    @property
    def encryption_context(self) -> dict[str, str]:
        return dict(self.context)

    def describe(self) -> str:
        return f"client-side ({self.format})"


ServerSide = Union[SSES3, SSEKMS, DSSEKMS, SSEC]  # noqa: UP007 - a runtime alias on 3.10
Encryption = Union[SSES3, SSEKMS, DSSEKMS, SSEC, ClientSide]  # noqa: UP007


@dataclass(frozen=True)
class FollowBucket:
    """The policy default that means: apply the bucket's own default encryption."""

    def describe(self) -> str:
        return "follow-bucket"


FOLLOW_BUCKET = FollowBucket()


def encode_context(context: tuple[tuple[str, str], ...]) -> str:
    """SSEKMSEncryptionContext is base64 of a JSON object."""
    return base64.b64encode(json.dumps(dict(context), sort_keys=True).encode()).decode()


def to_request_params(encryption: ServerSide) -> dict[str, Any]:
    """The PutObject/CopyObject/CreateMultipartUpload parameters that ask for ``encryption``.

    The SSE-C key is returned raw: botocore's own handler base64-encodes it and adds its
    MD5 later in ``before-parameter-build``.
    """
    if isinstance(encryption, SSES3):
        return {"ServerSideEncryption": "AES256"}
    if isinstance(encryption, SSEKMS):
        params: dict[str, Any] = {"ServerSideEncryption": "aws:kms"}
        if encryption.key_id:
            params["SSEKMSKeyId"] = encryption.key_id
        if encryption.bucket_key is not None:
            params["BucketKeyEnabled"] = encryption.bucket_key
        if encryption.context:
            params["SSEKMSEncryptionContext"] = encode_context(encryption.context)
        return params
    if isinstance(encryption, DSSEKMS):
        params = {"ServerSideEncryption": "aws:kms:dsse"}
        if encryption.key_id:
            params["SSEKMSKeyId"] = encryption.key_id
        if encryption.context:
            params["SSEKMSEncryptionContext"] = encode_context(encryption.context)
        return params
    return sse_c_params(encryption)


def sse_c_params(encryption: SSEC, *, prefix: str = "") -> dict[str, Any]:
    """SSE-C parameters; ``prefix="CopySource"`` gives the copy-source variants."""
    return {
        f"{prefix}SSECustomerAlgorithm": "AES256",
        f"{prefix}SSECustomerKey": encryption.key,
    }

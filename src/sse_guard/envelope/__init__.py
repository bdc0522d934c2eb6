"""Client-side envelope encryption in the Amazon S3 Encryption Client's object format.

``format`` (metadata), ``cipher`` (streams) and ``core`` (recipes) know nothing of
boto3; ``keyrings`` holds the pluggable seam; ``handlers`` glues it all to botocore
events for the guard, and ``rotation`` re-wraps data keys of stored objects.
"""

from __future__ import annotations

from .keyrings import (
    DataKey,
    Keyring,
    KmsKeyring,
    RawAesKeyring,
    RawRsaKeyring,
    keyring_from_config,
)

__all__ = [
    "DataKey",
    "Keyring",
    "KmsKeyring",
    "RawAesKeyring",
    "RawRsaKeyring",
    "keyring_from_config",
]

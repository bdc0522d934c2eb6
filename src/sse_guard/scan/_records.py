"""The scan record: one per object (or version) inspected. Its JSON keys are the contract.

``to_dict`` gives exactly the documented keys; an error record (a key that could not be
inspected after retries) adds one more, ``error``, so that no key is ever silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = ["CLASSES", "RECORD_KEYS", "EncryptionClass", "ScanRecord"]

EncryptionClass = Literal["NOT-SSE", "SSE-S3", "SSE-KMS", "DSSE-KMS", "SSE-C", "CLIENT-SIDE", "OTHER"]
CLASSES: Final[tuple[str, ...]] = ("NOT-SSE", "SSE-S3", "SSE-KMS", "DSSE-KMS", "SSE-C", "CLIENT-SIDE", "OTHER")

RECORD_KEYS: Final[tuple[str, ...]] = (
    "bucket",
    "key",
    "version_id",
    "size",
    "storage_class",
    "encryption",
    "kms_key_id",
    "bucket_key",
    "client_side_format",
    "object_lock",
    "compliant",
    "reason",
)


@dataclass(frozen=True)
class ScanRecord:
    """What one object (or one version) carries, and whether it meets the policy.

    ``compliant`` is None only on error records (``error`` set): the object could not
    be inspected. ``etag``, ``is_latest`` and ``last_modified`` travel with the record
    for the fixer and are not part of the JSON contract.
    """

    bucket: str
    key: str
    version_id: str | None
    size: int | None
    storage_class: str | None
    encryption: str | None
    kms_key_id: str | None
    bucket_key: bool | None
    client_side_format: str | None
    object_lock: dict[str, Any] | None
    compliant: bool | None
    reason: str
    error: str | None = None
    etag: str | None = field(default=None, compare=False, repr=False)
    is_latest: bool | None = field(default=None, compare=False, repr=False)

    @property
    def is_error(self) -> bool:
        return self.error is not None

    @property
    def is_finding(self) -> bool:
        return self.compliant is False and self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The contract's keys (plus ``error`` on an error record), JSON-ready."""
        out: dict[str, Any] = {name: getattr(self, name) for name in RECORD_KEYS}
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanRecord:
        """A record read back from ``jsonl`` output (e.g. to fix from a saved scan)."""
        fields: dict[str, Any] = {name: data.get(name) for name in RECORD_KEYS}
        return cls(
            **fields,
            error=data.get("error"),
            etag=data.get("etag"),
            is_latest=data.get("is_latest"),
        )

    @classmethod
    def failed(
        cls,
        bucket: str,
        key: str,
        version_id: str | None,
        *,
        error: str,
        reason: str,
        size: int | None = None,
        storage_class: str | None = None,
        is_latest: bool | None = None,
    ) -> ScanRecord:
        return cls(
            bucket=bucket,
            key=key,
            version_id=version_id,
            size=size,
            storage_class=storage_class,
            encryption=None,
            kms_key_id=None,
            bucket_key=None,
            client_side_format=None,
            object_lock=None,
            compliant=None,
            reason=reason,
            error=error,
            is_latest=is_latest,
        )

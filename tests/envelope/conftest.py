"""Shared helpers for the envelope tests: a stub KMS and object fixtures."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(os.environ.get("SSE_GUARD_VECTORS", "/work/shared/vectors")) / "s3ec_go_v4.json"


def load_vectors() -> dict[str, Any]:
    if not VECTORS.exists():
        pytest.skip(f"vectors not found at {VECTORS}", allow_module_level=True)
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


class StubKms:
    """Answers Decrypt with a fixed data key, like the Go tests' KMS stub; records calls."""

    def __init__(self, data_key: bytes | None = None) -> None:
        self.data_key = data_key or os.urandom(32)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._blobs: dict[bytes, tuple[bytes, dict[str, str]]] = {}

    def generate_data_key(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("GenerateDataKey", kwargs))
        key = os.urandom(32)
        blob = os.urandom(48)
        self._blobs[blob] = (key, dict(kwargs["EncryptionContext"]))
        return {"Plaintext": key, "CiphertextBlob": blob, "KeyId": kwargs["KeyId"]}

    def encrypt(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("Encrypt", kwargs))
        blob = os.urandom(48)
        self._blobs[blob] = (kwargs["Plaintext"], dict(kwargs["EncryptionContext"]))
        return {"CiphertextBlob": blob}

    def decrypt(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("Decrypt", kwargs))
        blob = kwargs["CiphertextBlob"]
        if blob in self._blobs:
            key, context = self._blobs[blob]
            if context != kwargs.get("EncryptionContext", {}):
                raise RuntimeError("InvalidCiphertextException")
            return {"Plaintext": key}
        if not self._blobs:
            return {"Plaintext": self.data_key}
        raise RuntimeError("InvalidCiphertextException")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()

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


# -- the wire harness: a stand-in for the guard's own provide-client-params handler ----------

import dataclasses  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from sse_guard import Guard, Policy, Rule  # noqa: E402
from sse_guard.envelope import KmsKeyring  # noqa: E402
from sse_guard.envelope.handlers import EnvelopeState  # noqa: E402
from sse_guard.settings import ClientSide  # noqa: E402


@dataclass
class Harness:
    """Clients on one backend guarded by a real ``sse_guard.Guard`` whose policy holds the
    client-side rules a test adds (longest prefix first)."""

    backend: Any
    s3: Any
    kms: Any
    bucket: str
    key_id: str
    state: EnvelopeState
    rules: dict[tuple[str, str], ClientSide] = field(default_factory=dict)
    sse_guard: Guard = field(init=False)

    def __post_init__(self) -> None:
        # follow-bucket elsewhere, fallback for lookup errors: only the rules matter here.
        # A guard binds the envelope handlers only when its policy has a client-side rule,
        # and this one's rules arrive later (rule()): start with one that matches nothing.
        never = Rule(bucket="-no-such-bucket-", encryption=ClientSide(keyring=KmsKeyring(self.key_id, client=self.kms)))
        self.sse_guard = Guard(Policy(rules=(never,), on_lookup_error="fallback"))
        self.sse_guard.envelope = self.state

    def rule(self, prefix: str = "", **kwargs: Any) -> ClientSide:
        kwargs.setdefault("keyring", KmsKeyring(self.key_id, client=self.kms))
        setting = ClientSide(**kwargs)
        self.rules[(self.bucket, prefix)] = setting
        ordered = sorted(self.rules.items(), key=lambda item: -len(item[0][1]))
        self.sse_guard.policy = dataclasses.replace(
            self.sse_guard.policy,
            rules=tuple(Rule(bucket=b, prefix=p, encryption=enc) for (b, p), enc in ordered),
        )
        return setting

    def guard(self, client: Any) -> Any:
        self.sse_guard.register(client)
        return client

    def plain_client(self) -> Any:
        return self.backend.client("s3")

    def new_guarded_client(self) -> Any:
        return self.guard(self.backend.client("s3"))


@pytest.fixture
def harness(backend: Any) -> Harness:
    s3 = backend.client("s3")
    kms = backend.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    bucket = backend.bucket("env")
    s3.create_bucket(Bucket=bucket)
    h = Harness(backend, s3, kms, bucket, key_id, EnvelopeState(order_timeout=20.0))
    h.guard(s3)
    return h


def raw_object(h: Harness, key: str) -> tuple[bytes, dict[str, str]]:
    """What is really stored: body and user metadata, read with an unguarded client."""
    response = h.plain_client().get_object(Bucket=h.bucket, Key=key)
    return response["Body"].read(), response["Metadata"]


def put_raw(h: Harness, key: str, body: bytes, metadata: dict[str, str]) -> None:
    h.plain_client().put_object(Bucket=h.bucket, Key=key, Body=body, Metadata=metadata)


Tamper = Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]]

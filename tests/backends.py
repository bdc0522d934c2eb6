"""What the tests run against, and what they record. Fixtures are in conftest.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import boto3

from sse_guard.pytest_plugin import SentRequest, WireRecorder

__all__ = ["Backend", "SentRequest", "Wire", "sse_headers"]


@dataclass
class Backend:
    """One S3+KMS to test against. Clients made from ``session()`` reach it."""

    name: str
    endpoint_url: str | None

    def session(self) -> boto3.Session:
        return boto3.Session(region_name="us-east-1")

    def client(self, service: str = "s3", session: boto3.Session | None = None, **kwargs: Any) -> Any:
        return (session or self.session()).client(service, **kwargs)

    def bucket(self, stem: str = "bkt") -> str:
        """A bucket name unique to this test (the strict tier keeps state between tests)."""
        return f"{stem}-{uuid.uuid4().hex[:10]}"

    @property
    def strict(self) -> bool:
        return self.name == "strict"


class Wire(WireRecorder):
    """The plugin's recorder, with the two conveniences these tests use."""

    @property
    def sent(self) -> list[SentRequest]:
        return list(self.requests)

    def clear(self) -> None:
        self.requests.clear()


def sse_headers(sent: SentRequest) -> dict[str, str]:
    return {k: v for k, v in sent.headers.items() if "server-side-encryption" in k}

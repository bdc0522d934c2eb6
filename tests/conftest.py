"""Shared test backends: moto in-process, moto's ThreadedMotoServer on 127.0.0.1, and the
strict tier (LocalStack, when SSE_GUARD_STRICT_ENDPOINT is set; see the README).

A test that takes ``backend`` runs on both moto modes; marked ``strict_s3`` it runs on
the strict tier too. ``wire`` records what botocore really sent.
"""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
_CLEARED = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_KMS", "SSE_GUARD_POLICY")


@pytest.fixture(autouse=True)
def _fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may find real credentials or reach AWS."""
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in _FAKE_ENV.items():
        monkeypatch.setenv(name, value)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        names = ["mock", "server"]
        if metafunc.definition.get_closest_marker("strict_s3"):
            names.append("strict")
        metafunc.parametrize("backend", names, indirect=True)


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


@pytest.fixture(scope="session")
def moto_server_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _reset_moto(url: str) -> None:
    req = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


@pytest.fixture
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    name = request.param
    if name == "mock":
        from moto import mock_aws

        with mock_aws():
            yield Backend("mock", None)
        return
    if name == "server":
        url = request.getfixturevalue("moto_server_url")
        _reset_moto(url)
    else:
        from strict_tier import require_strict_or_skip

        url = require_strict_or_skip()
    # Every client botocore makes in this test, the guard's own included, goes there.
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    yield Backend(name, url)


@dataclass
class Sent:
    operation: str
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


@dataclass
class Wire:
    """Records the final request of every attempt, as botocore sends it (after signing)."""

    sent: list[Sent] = field(default_factory=list)

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-send.s3", self._record, unique_id=f"wire-{id(self)}")
        return client

    def _record(self, request: Any, event_name: str, **kwargs: Any) -> None:
        body = request.body if isinstance(request.body, (bytes, bytearray)) else None
        headers = {k.lower(): (v.decode() if isinstance(v, bytes) else str(v)) for k, v in request.headers.items()}
        self.sent.append(Sent(event_name.rsplit(".", 1)[-1], request.method, request.url, headers, body))

    def of(self, operation: str) -> list[Sent]:
        return [s for s in self.sent if s.operation == operation]

    def one(self, operation: str) -> Sent:
        found = self.of(operation)
        assert len(found) == 1, f"expected one {operation}, sent {[s.operation for s in self.sent]}"
        return found[0]

    def clear(self) -> None:
        self.sent.clear()


@pytest.fixture
def wire() -> Wire:
    return Wire()


def sse_headers(sent: Sent) -> dict[str, str]:
    return {k: v for k, v in sent.headers.items() if "server-side-encryption" in k}


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)

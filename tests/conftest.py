"""Shared test backends: moto in-process, moto's ThreadedMotoServer on 127.0.0.1, and the
strict tier (LocalStack, when SSE_GUARD_STRICT_ENDPOINT is set; see the README).

A test that takes ``backend`` runs on both moto modes; marked ``strict_s3`` it runs on
the strict tier too. ``wire`` records what botocore really sent. The classes live in
``backends.py`` (a module name no other conftest takes).
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator

import pytest

from backends import Backend, Wire

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


@pytest.fixture(scope="session")
def moto_server_url(sse_guard_moto_server: str) -> str:
    """The plugin's session-wide ThreadedMotoServer on 127.0.0.1."""
    return sse_guard_moto_server


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


@pytest.fixture
def wire() -> Wire:
    return Wire()

"""The strict S3 tier (LocalStack in host mode) as the test suite sees it.

`ci/strict-s3.sh start DIR` starts LocalStack on a free 127.0.0.1 port and prints
`export SSE_GUARD_STRICT_ENDPOINT=http://127.0.0.1:PORT`; `.ci/run` does this before pytest.
Tests marked `strict_s3` call `require_strict_or_skip()`: without the variable they skip
(visibly) on a developer's machine, and fail under CI, where a missing tier is a broken run,
not a pass.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

ENV_VAR = "SSE_GUARD_STRICT_ENDPOINT"
REGION = "us-east-1"
SKIP_REASON = f"strict S3 tier not configured: set {ENV_VAR}, see README"
_SERVICES = ("s3", "kms")
_HEALTH_TIMEOUT_S = 5.0


class StrictEndpointError(ValueError):
    """SSE_GUARD_STRICT_ENDPOINT is set to something that is not a loopback http(s) URL."""


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # 127.0.0.0/8 and ::1
    except ValueError:
        return False


def strict_endpoint() -> str | None:
    """The strict tier's endpoint URL from SSE_GUARD_STRICT_ENDPOINT, or None when unset/empty.

    Raises StrictEndpointError unless it is an http(s) URL on a loopback host
    (localhost, 127.0.0.0/8, ::1) with no credentials, path, query or fragment.
    """
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    try:
        url = urllib.parse.urlsplit(raw)
        host = url.hostname
        url.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError as exc:
        raise StrictEndpointError(f"{ENV_VAR}={raw!r} is not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise StrictEndpointError(f"{ENV_VAR}={raw!r}: scheme must be http or https")
    if not host or not _is_loopback_host(host):
        raise StrictEndpointError(
            f"{ENV_VAR}={raw!r}: the strict tier must run on this machine "
            "(localhost, 127.0.0.0/8 or ::1)"
        )
    if url.username is not None or url.password is not None:
        raise StrictEndpointError(f"{ENV_VAR}={raw!r}: no credentials in the URL")
    if url.path not in ("", "/") or url.query or url.fragment:
        raise StrictEndpointError(f"{ENV_VAR}={raw!r}: give scheme://host:port only")
    return f"{url.scheme}://{url.netloc}"


@functools.cache
def _health_problem(endpoint: str) -> str | None:
    """None when LocalStack's health check reports s3 and kms up, else what is wrong."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if endpoint.startswith("https://"):
        # LocalStack serves a self-signed certificate; the host is loopback (checked above).
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    opener = urllib.request.build_opener(*handlers)
    url = f"{endpoint}/_localstack/health"
    try:
        with opener.open(url, timeout=_HEALTH_TIMEOUT_S) as resp:
            services = json.load(resp).get("services", {})
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused, bad JSON
        return f"{url} did not answer: {exc}"
    down = {
        s: services.get(s) for s in _SERVICES if services.get(s) not in ("available", "running")
    }
    if down:
        return f"{url} answered but these services are not available: {down}"
    return None


def require_strict_or_skip() -> str:
    """Return the strict tier's endpoint, or skip/fail the calling test.

    Unset, outside CI: skip with a visible reason. Unset with CI=true: fail.
    Set but not answering its health check: fail (in CI and out), since someone asked for it.
    """
    endpoint = strict_endpoint()
    in_ci = os.environ.get("CI", "").strip().lower() == "true"
    if endpoint is None:
        if in_ci:
            pytest.fail(f"CI=true but {SKIP_REASON}", pytrace=False)
        pytest.skip(SKIP_REASON)
    problem = _health_problem(endpoint)
    if problem is not None:
        pytest.fail(f"strict S3 tier at {endpoint} is not usable: {problem}", pytrace=False)
    return endpoint


def strict_client_kwargs() -> dict[str, Any]:
    """Keyword arguments for boto3 clients (s3, kms) on the strict tier.

    Skips or fails the calling test like require_strict_or_skip(). LocalStack does not check
    ordinary request signatures, so these test credentials are fixed.
    """
    return {
        "endpoint_url": require_strict_or_skip(),
        "region_name": REGION,
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",
    }

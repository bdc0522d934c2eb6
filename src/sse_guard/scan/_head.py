"""One object's HeadObject: retries under the adaptive limit, and what came back.

``HeadRunner.fetch`` is all the network work a record needs; it runs in the scanner's own
threads or in a HEAD worker process. The record is built from its ``Fetched`` result by
the scanner (``Scanner._finish``), the same way in both cases.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ._concurrency import AdaptiveLimit, backoff_delay, error_kind, error_text

__all__ = ["HEAD_FIELDS", "Counters", "Fetched", "HeadRunner"]

# The HeadObject fields a record is built from (observe_head, object_lock_of, _finish).
HEAD_FIELDS = (
    "VersionId",
    "ContentLength",
    "StorageClass",
    "ETag",
    "ObjectLockMode",
    "ObjectLockRetainUntilDate",
    "ObjectLockLegalHoldStatus",
    "ServerSideEncryption",
    "SSEKMSKeyId",
    "BucketKeyEnabled",
    "Metadata",
    "SSECustomerAlgorithm",
    "SSECustomerKeyMD5",
)


@dataclass(frozen=True)
class Fetched:
    """What inspecting one key gave: a HEAD response, an unreadable SSE-C object, or an error."""

    head: dict[str, Any] | None = None
    sse_c: bool = False
    error: str | None = None
    reason: str | None = None


class Counters:
    """Throttles and retries seen (a ``ScanStats`` in the scanner's own process)."""

    throttled: int = 0
    retries: int = 0


class HeadRunner:
    """HeadObject with retries of throttles and transient errors under an ``AdaptiveLimit``."""

    def __init__(
        self,
        client: Any,
        limit: AdaptiveLimit,
        counters: Any,
        *,
        max_attempts: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.limit = limit
        self.counters = counters
        self.max_attempts = max_attempts
        self._sleep = sleep
        self._head_object = client.head_object

    def head(self, params: dict[str, Any]) -> dict[str, Any]:
        attempt = 0
        while True:
            self.limit.acquire()
            try:
                resp: dict[str, Any] = self._head_object(**params)
            except (ClientError, BotoCoreError) as e:
                kind = error_kind(e)
                if kind == "throttle":
                    self.counters.throttled += 1
                    self.limit.on_throttle()
                if kind not in ("throttle", "transient") or attempt + 1 >= self.max_attempts:
                    raise
            else:
                self.limit.on_success()
                return resp
            finally:
                self.limit.release()
            self.counters.retries += 1
            self._sleep(backoff_delay(attempt))
            attempt += 1

    def fetch(self, params: dict[str, Any], sse_c: dict[str, Any] | None) -> Fetched:
        """HEAD one key; ``sse_c`` holds the policy's SSE-C key parameters, if it names one."""
        try:
            head = self.head(params)
        except (ClientError, BotoCoreError) as e:
            kind = error_kind(e)
            if kind == "bad-request" and "SSECustomerKey" not in params:
                # S3 answers HEAD on an SSE-C object without its key with a bare 400.
                if sse_c is not None:
                    return self._fetch_sse_c({**params, **sse_c})
                return Fetched(sse_c=True)
            if kind == "not-found":
                return Fetched(error="NotFound", reason="deleted since it was listed")
            return Fetched(error=error_text(e), reason=f"HeadObject failed ({kind})")
        return Fetched(head=_fields(head))

    def _fetch_sse_c(self, params: dict[str, Any]) -> Fetched:
        try:
            head = self.head(params)
        except (ClientError, BotoCoreError) as e:
            if error_kind(e) in ("denied", "bad-request"):
                return Fetched(sse_c=True)
            return Fetched(error=error_text(e), reason="HeadObject with the policy's SSE-C key failed")
        return Fetched(head=_fields(head))


def _fields(head: dict[str, Any]) -> dict[str, Any]:
    return {name: head[name] for name in HEAD_FIELDS if name in head}

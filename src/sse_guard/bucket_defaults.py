"""The one place that calls GetBucketEncryption, behind a cache.

TTL, single flight (any number of threads writing to a cold bucket cause one lookup),
negative entries for buckets without a configuration, keys that include the endpoint,
region and credentials so two accounts never share an entry. Failures are not cached:
the next write asks again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .errors import BucketEncryptionLookupError
from .policy import BucketDefault
from .settings import DSSEKMS, SSEKMS, SSES3, ServerSide

__all__ = ["BucketDefaultsCache", "CacheStats", "fetch_bucket_default", "parse_bucket_encryption"]

NO_CONFIGURATION = "ServerSideEncryptionConfigurationNotFoundError"


def parse_bucket_encryption(response: dict[str, Any]) -> BucketDefault:
    """A GetBucketEncryption response as a ``BucketDefault``."""
    rules = response.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    encryption: ServerSide | None = None
    blocks_sse_c = False
    for rule in rules:
        blocked = rule.get("BlockedEncryptionTypes", {}).get("EncryptionType", [])
        blocks_sse_c = blocks_sse_c or "SSE-C" in blocked
        by_default = rule.get("ApplyServerSideEncryptionByDefault")
        if by_default is None or encryption is not None:
            continue
        alg = by_default.get("SSEAlgorithm")
        key = by_default.get("KMSMasterKeyID") or None
        if alg == "AES256":
            encryption = SSES3()
        elif alg == "aws:kms":
            encryption = SSEKMS(key_id=key, bucket_key=bool(rule.get("BucketKeyEnabled", False)))
        elif alg == "aws:kms:dsse":
            encryption = DSSEKMS(key_id=key)
        # Anything else (a future algorithm) is left to S3: we inject nothing we don't know.
    return BucketDefault(encryption=encryption, blocks_sse_c=blocks_sse_c)


def fetch_bucket_default(client: Any, bucket: str, *, expected_owner: str | None = None) -> BucketDefault:
    """Ask S3. Raises ``BucketEncryptionLookupError`` for every failure but "not configured"."""
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if expected_owner:
        kwargs["ExpectedBucketOwner"] = expected_owner
    try:
        response = client.get_bucket_encryption(**kwargs)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code == NO_CONFIGURATION:
            return BucketDefault(encryption=None)
        raise BucketEncryptionLookupError(
            f"cannot read the default encryption of bucket {bucket!r}: {code or e}; "
            "the write was not sent",
            bucket=bucket,
        ) from e
    except BotoCoreError as e:
        raise BucketEncryptionLookupError(
            f"cannot read the default encryption of bucket {bucket!r}: {e}; the write was not sent",
            bucket=bucket,
        ) from e
    return parse_bucket_encryption(response)


@dataclass(frozen=True)
class CacheStats:
    lookups: int
    hits: int
    coalesced: int


class _Flight:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: BucketDefault | None = None
        self.error: BaseException | None = None


class BucketDefaultsCache:
    """Thread-safe TTL cache of ``BucketDefault`` values with single-flight fetches."""

    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[float, BucketDefault]] = {}
        self._flights: dict[Hashable, _Flight] = {}
        self._lookups = 0
        self._hits = 0
        self._coalesced = 0

    def peek(self, key: Hashable) -> BucketDefault | None:
        """The cached value if fresh, without any I/O (for presigning)."""
        with self._lock:
            return self._fresh(key)

    def get(self, key: Hashable, fetch: Callable[[], BucketDefault]) -> BucketDefault:
        with self._lock:
            value = self._fresh(key)
            if value is not None:
                self._hits += 1
                return value
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
                self._lookups += 1
            else:
                self._coalesced += 1
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            assert flight.value is not None
            return flight.value
        try:
            value = fetch()
        except BaseException as e:
            flight.error = e
            raise
        else:
            flight.value = value
            with self._lock:
                self._entries[key] = (self._clock() + self._ttl, value)
            return value
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def invalidate(self, predicate: Callable[[Hashable], bool] | None = None) -> int:
        """Drop entries (all, or those whose key matches). Returns how many were dropped."""
        with self._lock:
            doomed = [k for k in self._entries if predicate is None or predicate(k)]
            for k in doomed:
                del self._entries[k]
            return len(doomed)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(lookups=self._lookups, hits=self._hits, coalesced=self._coalesced)

    def _fresh(self, key: Hashable) -> BucketDefault | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        return value

"""The bucket-default cache: TTL, single flight, negative entries, failures not cached."""

from __future__ import annotations

import threading
import time

import pytest

from sse_guard import BucketEncryptionLookupError
from sse_guard.bucket_defaults import BucketDefaultsCache, parse_bucket_encryption
from sse_guard.policy import BucketDefault
from sse_guard.settings import DSSEKMS, SSEKMS, SSES3


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = BucketDefaultsCache(10, clock=clock)
    calls: list[int] = []

    def fetch() -> BucketDefault:
        calls.append(1)
        return BucketDefault(SSES3())

    cache.get("b", fetch)
    clock.now = 9.9
    cache.get("b", fetch)
    clock.now = 10.0
    cache.get("b", fetch)
    assert len(calls) == 2
    assert cache.stats().hits == 1 and cache.stats().lookups == 2


def test_no_configuration_is_cached_as_a_negative_entry() -> None:
    cache = BucketDefaultsCache(10, clock=Clock())
    calls: list[int] = []

    def fetch() -> BucketDefault:
        calls.append(1)
        return BucketDefault(None)

    assert cache.get("b", fetch).encryption is None
    assert cache.get("b", fetch).encryption is None
    assert len(calls) == 1


def test_concurrent_cold_reads_share_one_fetch_and_its_failure() -> None:
    cache = BucketDefaultsCache(10)
    started = threading.Event()
    release = threading.Event()
    calls: list[int] = []

    def fetch() -> BucketDefault:
        calls.append(1)
        started.set()
        release.wait(5)
        raise BucketEncryptionLookupError("denied", bucket="b")

    errors: list[BaseException] = []

    def read() -> None:
        try:
            cache.get("b", fetch)
        except BucketEncryptionLookupError as e:
            errors.append(e)

    threads = [threading.Thread(target=read) for _ in range(16)]
    threads[0].start()
    started.wait(5)
    for t in threads[1:]:
        t.start()
    time.sleep(0.05)
    release.set()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(errors) == 16
    # a failure is not cached
    with pytest.raises(BucketEncryptionLookupError):
        cache.get("b", fetch)
    assert len(calls) == 2


def test_invalidate_drops_matching_entries_only() -> None:
    cache = BucketDefaultsCache(10)
    cache.get(("e", "r", "a", "one"), lambda: BucketDefault(None))
    cache.get(("e", "r", "a", "two"), lambda: BucketDefault(None))
    assert cache.invalidate(lambda k: k[-1] == "one") == 1
    assert cache.peek(("e", "r", "a", "one")) is None
    assert cache.peek(("e", "r", "a", "two")) is not None


def test_get_bucket_encryption_answers_are_parsed() -> None:
    kms = parse_bucket_encryption(
        {"ServerSideEncryptionConfiguration": {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "arn:k"}, "BucketKeyEnabled": True}]}}
    )
    assert kms == BucketDefault(SSEKMS(key_id="arn:k", bucket_key=True))
    dsse = parse_bucket_encryption({"ServerSideEncryptionConfiguration": {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms:dsse"}}]}})
    assert dsse == BucketDefault(DSSEKMS())
    blocked = parse_bucket_encryption(
        {"ServerSideEncryptionConfiguration": {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]}}]}}
    )
    assert blocked == BucketDefault(SSES3(), blocks_sse_c=True)
    unknown = parse_bucket_encryption({"ServerSideEncryptionConfiguration": {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:future"}}]}})
    assert unknown.encryption is None

"""The scanner against moto (in-process and server), checked on the wire."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from scan_helpers import (
    AWKWARD_KEYS,
    SLOWDOWN,
    V3_META,
    Faults,
    Keys,
    alias_of,
    kms_a_policy,
    seed_every_class,
)

from sse_guard.policy import Policy, Rule
from sse_guard.scan import Scanner, make_classifier, make_s3_client
from sse_guard.settings import SSES3, ClientSide


def scanner(backend: Any, s3: Any, policy: Policy, **kw: Any) -> Scanner:
    kw.setdefault("workers", 4)
    kw.setdefault("max_workers", 8)
    classifier = make_classifier(s3, policy, kms_client=backend.client("kms"))
    return Scanner(s3, classifier=classifier, sleep=lambda s: None, **kw)


def plain_client(backend: Any, **kw: Any) -> Any:
    return make_s3_client(backend.session(), max_pool_connections=16, **kw)


def test_every_class_is_reported_and_judged_against_the_required_kms_key(backend: Any, kms_keys: Keys, wire: Any) -> None:
    s3 = plain_client(backend)
    bucket = backend.bucket("legacy")
    s3.create_bucket(Bucket=bucket)
    alias = alias_of(backend, kms_keys.a)
    expected = seed_every_class(s3, bucket, kms_keys, alias=alias)
    wire.attach(s3)

    records = {r.key: r for r in scanner(backend, s3, kms_a_policy(backend, kms_keys)).scan([f"s3://{bucket}"])}

    assert {k: r.encryption for k, r in records.items()} == expected
    compliant = {k for k, r in records.items() if r.compliant}
    assert compliant == {"kms-a.txt", "kms-a-arn.txt"}
    # The alias the object was written with is reported as the key's ARN.
    assert records["kms-a.txt"].kms_key_id == kms_keys.a
    assert records["kms-b.txt"].kms_key_id == kms_keys.b
    assert "falls short" not in records["kms-b.txt"].reason and kms_keys.b in records["kms-b.txt"].reason
    assert records["client/v3.bin"].client_side_format == "v3"
    assert records["client/v2.bin"].client_side_format == "v2"
    assert all(r.error is None for r in records.values())
    # One HeadObject per object, each for exactly that key.
    assert len(wire.of("HeadObject")) == len(expected)


def test_awkward_keys_are_listed_and_inspected_verbatim(backend: Any, wire: Any) -> None:
    s3 = plain_client(backend)
    bucket = backend.bucket("keys")
    s3.create_bucket(Bucket=bucket)
    for k in AWKWARD_KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    records = list(scanner(backend, s3, Policy()).scan([f"s3://{bucket}"]))
    assert sorted(r.key for r in records) == sorted(AWKWARD_KEYS)
    assert all(r.error is None and r.encryption == "NOT-SSE" for r in records)


def test_follow_bucket_judges_against_each_buckets_default_fetched_once(backend: Any, wire: Any) -> None:
    s3 = plain_client(backend)
    enc, legacy = backend.bucket("enc"), backend.bucket("legacy")
    for b in (enc, legacy):
        s3.create_bucket(Bucket=b)
        s3.put_object(Bucket=b, Key="old.txt", Body=b"x")  # before the rule: plaintext
    s3.put_bucket_encryption(
        Bucket=enc,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
    )
    s3.put_object(Bucket=enc, Key="new.txt", Body=b"x")
    wire.attach(s3)
    records = {(r.bucket, r.key): r for r in scanner(backend, s3, Policy()).scan([f"s3://{enc}", f"s3://{legacy}"])}
    assert records[(enc, "new.txt")].compliant is True
    assert records[(enc, "old.txt")].compliant is False
    # No default in the legacy bucket: the policy's fallback (SSE-S3) is what is required.
    assert records[(legacy, "old.txt")].compliant is False
    assert len(wire.of("GetBucketEncryption")) == 2


def test_sse_c_object_is_a_record_never_a_fatal_error(backend: Any, faults: Faults) -> None:
    s3 = plain_client(backend)
    bucket = backend.bucket("ssec")
    s3.create_bucket(Bucket=bucket)
    for k in ("a.txt", "secret.bin", "z.txt"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    # moto ignores SSE-C; real S3 answers HEAD without the key with a bare 400.
    faults.when(lambda r: r.method == "HEAD" and "secret.bin" in r.url, 400)
    faults.attach(s3)
    records = {r.key: r for r in scanner(backend, s3, Policy()).scan([f"s3://{bucket}"])}
    assert records["secret.bin"].encryption == "SSE-C"
    assert records["secret.bin"].compliant is False and records["secret.bin"].error is None
    assert "without its key" in records["secret.bin"].reason
    assert set(records) == {"a.txt", "secret.bin", "z.txt"}


def test_all_versions_inspects_every_version_including_those_under_a_delete_marker(backend: Any, wire: Any) -> None:
    s3 = plain_client(backend)
    bucket = backend.bucket("versioned")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"two", ServerSideEncryption="AES256")["VersionId"]
    s3.delete_object(Bucket=bucket, Key="doc.txt")  # a delete marker on top
    wire.attach(s3)
    records = list(scanner(backend, s3, Policy(), all_versions=True).scan([f"s3://{bucket}"]))
    by_version = {r.version_id: r for r in records}
    assert set(by_version) == {v1, v2}
    assert by_version[v1].compliant is False and by_version[v2].compliant is True
    heads = wire.of("HeadObject")
    assert sorted(h.url.split("versionId=")[1] for h in heads) == sorted([v1, v2])
    assert wire.of("ListObjectVersions")


def test_object_lock_settings_are_reported(backend: Any) -> None:
    s3 = plain_client(backend)
    bucket = backend.bucket("locked")
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_object(
        Bucket=bucket,
        Key="kept.txt",
        Body=b"x",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate="2099-01-01T00:00:00Z",
        ObjectLockLegalHoldStatus="ON",
    )
    (record,) = scanner(backend, s3, Policy()).scan([f"s3://{bucket}"])
    assert record.object_lock is not None
    assert record.object_lock["mode"] == "GOVERNANCE" and record.object_lock["legal_hold"] == "ON"
    assert record.object_lock["retain_until"].startswith("2099-01-01")


def test_a_failing_key_in_the_middle_does_not_stop_the_rest_and_is_counted(backend: Any, faults: Faults) -> None:
    s3 = plain_client(backend)
    bucket = backend.bucket("partial")
    s3.create_bucket(Bucket=bucket)
    keys = [f"k{i:03d}" for i in range(30)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    faults.when(lambda r: r.method == "HEAD" and r.url.endswith("/k015"), 403)
    faults.attach(s3)
    sc = scanner(backend, s3, Policy(), page_size=7)
    records = list(sc.scan([f"s3://{bucket}"]))
    assert sorted(r.key for r in records) == keys
    (bad,) = [r for r in records if r.is_error]
    assert bad.key == "k015" and bad.compliant is None and bad.error is not None
    assert sc.stats.errors == 1 and sc.stats.inspected == 30


def test_slowdown_shrinks_concurrency_and_no_key_is_lost(backend: Any, faults: Faults) -> None:
    s3 = plain_client(backend, retries=1)  # botocore does not retry: the scanner must
    bucket = backend.bucket("throttled")
    s3.create_bucket(Bucket=bucket)
    keys = [f"obj-{i:03d}" for i in range(60)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def throttled(request: Any) -> bool:
        if request.method != "HEAD":
            return False
        with lock:
            seen[request.url] += 1
            return seen[request.url] <= 2  # every HEAD is throttled twice, then succeeds

    faults.when(throttled, 503, SLOWDOWN)
    faults.attach(s3)
    sc = scanner(backend, s3, Policy(), workers=8, max_workers=8)
    records = list(sc.scan([f"s3://{bucket}"]))
    assert sorted(r.key for r in records) == keys
    assert not [r for r in records if r.is_error]
    assert sc.stats.throttled == 120
    assert sc.limit.cuts >= 1 and sc.limit.lowest < 8


def test_listing_is_pipelined_with_heads_never_waiting_for_the_whole_listing(backend: Any, wire: Any) -> None:
    s3 = plain_client(backend)
    bucket = backend.bucket("pipe")
    s3.create_bucket(Bucket=bucket)
    for i in range(40):
        s3.put_object(Bucket=bucket, Key=f"k{i:02d}", Body=b"x")
    wire.attach(s3)
    list(scanner(backend, s3, Policy(), workers=2, max_workers=2, page_size=5).scan([f"s3://{bucket}"]))
    ops = [s.operation for s in wire.sent]
    last_list = max(i for i, op in enumerate(ops) if op == "ListObjectsV2")
    first_head = ops.index("HeadObject")
    assert first_head < last_list


def test_fan_out_lists_sub_prefixes_separately_and_finds_each_key_once(backend: Any, wire: Any) -> None:
    s3 = plain_client(backend)
    bucket = backend.bucket("fan")
    s3.create_bucket(Bucket=bucket)
    keys = ["top.txt"] + [f"{p}/{i}.txt" for p in ("a", "b", "c") for i in range(3)] + ["c/deep/x.txt"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    wire.attach(s3)
    records = list(scanner(backend, s3, Policy(), fan_out_depth=1).scan([f"s3://{bucket}"]))
    assert sorted(r.key for r in records) == sorted(keys)
    listings = wire.of("ListObjectsV2")
    assert any("delimiter=%2F" in s.url for s in listings)
    assert {p for p in ("a%2F", "b%2F", "c%2F") if any(f"prefix={p}" in s.url for s in listings)} == {
        "a%2F",
        "b%2F",
        "c%2F",
    }


def test_an_interrupted_scan_resumes_from_its_state_file(backend: Any, tmp_path: Any) -> None:
    s3 = plain_client(backend)
    bucket = backend.bucket("resume")
    s3.create_bucket(Bucket=bucket)
    keys = [f"{p}/{i:02d}" for p in ("x", "y") for i in range(20)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    state = tmp_path / "scan.state"
    first = scanner(backend, s3, Policy(), page_size=5, fan_out_depth=1, state_file=state, workers=1, max_workers=1)
    seen: list[str] = []
    it = first.scan([f"s3://{bucket}"])
    for rec in it:
        seen.append(rec.key)
        if len(seen) == 17:
            break
    it.close()  # interrupted
    assert state.exists()
    second = scanner(backend, s3, Policy(), page_size=5, fan_out_depth=1, state_file=state)
    rest = [r.key for r in second.scan([f"s3://{bucket}"])]
    assert set(seen) | set(rest) == set(keys)
    assert len(rest) < len(keys)  # delivered pages were not scanned again
    third = scanner(backend, s3, Policy(), page_size=5, fan_out_depth=1, state_file=state)
    assert list(third.scan([f"s3://{bucket}"])) == []  # complete: nothing left


def test_a_client_side_rule_requires_s3_encryption_client_metadata(backend: Any) -> None:
    s3 = plain_client(backend)
    bucket = backend.bucket("vault")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="vault/enc.bin", Body=b"x", Metadata=V3_META)
    s3.put_object(Bucket=bucket, Key="vault/plain.bin", Body=b"x", ServerSideEncryption="AES256")
    s3.put_object(Bucket=bucket, Key="public/readme.txt", Body=b"x", ServerSideEncryption="AES256")
    policy = Policy(rules=(Rule(bucket, ClientSide(keyring=object()), prefix="vault/"),), default=SSES3())  # type: ignore[arg-type]
    records = {r.key: r for r in scanner(backend, s3, policy).scan([f"s3://{bucket}"])}
    assert records["vault/enc.bin"].compliant is True
    assert records["vault/plain.bin"].compliant is False
    assert records["public/readme.txt"].compliant is True


def test_a_listing_that_fails_is_an_error_record(backend: Any) -> None:
    s3 = plain_client(backend)
    records = list(scanner(backend, s3, Policy()).scan([f"s3://{backend.bucket('missing')}"]))
    assert len(records) == 1 and records[0].is_error and "NoSuchBucket" in (records[0].error or "")


@pytest.mark.parametrize("n", [0])
def test_an_empty_bucket_yields_nothing(backend: Any, n: int) -> None:
    s3 = plain_client(backend)
    bucket = backend.bucket("empty")
    s3.create_bucket(Bucket=bucket)
    assert list(scanner(backend, s3, Policy()).scan([f"s3://{bucket}"])) == []

"""The plugin's fixtures used directly, on both moto modes."""

from __future__ import annotations

from typing import Any

import pytest

from sse_guard import SSEC, Policy, PolicyViolation, Rule
from sse_guard.pytest_plugin import (
    BucketFactory,
    KmsKey,
    LegacySeeder,
    MotoAWS,
    WireRecorder,
    is_loopback_url,
)

both_modes = pytest.mark.parametrize(
    "mode",
    [pytest.param("mock", id="mock"), pytest.param("server", id="server", marks=pytest.mark.sse_guard(server=True))],
)


@both_modes
def test_a_write_without_sse_carries_the_bucket_default_on_the_wire(
    mode: str,
    sse_guard_aws: MotoAWS,
    sse_guard_s3: Any,
    sse_guard_bucket: BucketFactory,
    sse_guard_kms_key: KmsKey,
    sse_guard_recorder: WireRecorder,
) -> None:
    assert sse_guard_aws.mode == mode
    bucket = sse_guard_bucket("SSE-KMS", bucket_key=True)
    sse_guard_s3.put_object(Bucket=bucket, Key="a.txt", Body=b"x")
    sent = sse_guard_recorder.assert_sse(
        "PutObject", "SSE-KMS", kms_key_id=sse_guard_kms_key.arn, bucket_key=True, key="a.txt"
    )
    assert sent.bucket == bucket
    if mode == "server":
        assert sent.url.startswith(sse_guard_aws.endpoint_url or "?")


def test_a_bucket_with_no_default_gets_the_fallback(
    sse_guard_s3: Any, sse_guard_bucket: BucketFactory, sse_guard_recorder: WireRecorder
) -> None:
    bucket = sse_guard_bucket(None)
    sse_guard_s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert sse_guard_recorder.sse_of("PutObject") == {"x-amz-server-side-encryption": "AES256"}


@pytest.mark.parametrize("default", ["SSE-S3", "DSSE-KMS"])
def test_the_bucket_factory_sets_the_default_encryption(
    default: str, sse_guard_aws: MotoAWS, sse_guard_bucket: BucketFactory
) -> None:
    bucket = sse_guard_bucket(default)
    rule = sse_guard_aws.client("s3").get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    expected = {"SSE-S3": "AES256", "DSSE-KMS": "aws:kms:dsse"}[default]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == expected


def test_a_bucket_that_blocks_sse_c_says_so_to_the_guard(
    sse_guard_aws: MotoAWS, sse_guard_bucket: BucketFactory
) -> None:
    bucket = sse_guard_bucket(block_sse_c=True)
    rule = sse_guard_aws.client("s3").get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["BlockedEncryptionTypes"] == {"EncryptionType": ["SSE-C"]}
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


@pytest.mark.sse_guard(policy=Policy(rules=(Rule("*", SSEC(b"k" * 32)),)))
def test_the_guard_refuses_sse_c_into_a_bucket_that_blocks_it(
    sse_guard_bucket: BucketFactory, sse_guard_session: Any
) -> None:
    bucket = sse_guard_bucket(block_sse_c=True)
    with pytest.raises(PolicyViolation, match="blocks SSE-C"):
        sse_guard_session.client("s3").put_object(Bucket=bucket, Key="k", Body=b"x")


def test_legacy_objects_are_stored_unencrypted(sse_guard_aws: MotoAWS, sse_guard_legacy: LegacySeeder) -> None:
    seeded = sse_guard_legacy(keys=2)
    assert seeded.keys == ("legacy/0000.txt", "legacy/0001.txt")
    s3 = sse_guard_aws.client("s3")
    for key in seeded.keys:
        assert "ServerSideEncryption" not in s3.head_object(Bucket=seeded.bucket, Key=key)


def test_legacy_objects_cannot_be_seeded_into_an_encrypted_bucket(
    sse_guard_bucket: BucketFactory, sse_guard_legacy: LegacySeeder
) -> None:
    with pytest.raises(ValueError, match="has a default encryption"):
        sse_guard_legacy(sse_guard_bucket("SSE-S3"))


@pytest.mark.sse_guard(policy={"rules": [{"bucket": "*", "algorithm": "aws:kms", "kms_key_id": "alias/app-data"}]}, mode="enforce")
def test_aliases_the_policy_names_exist_and_enforce_comes_from_the_marker(
    sse_guard_aws: MotoAWS, sse_guard_s3: Any, sse_guard_bucket: BucketFactory, sse_guard_recorder: WireRecorder, sse_guard_guard: Any
) -> None:
    assert sse_guard_guard.mode == "enforce"
    bucket = sse_guard_bucket()
    sse_guard_s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    sse_guard_recorder.assert_sse("PutObject", "aws:kms", kms_key_id=sse_guard_aws.kms_key("alias/app-data").arn)
    with pytest.raises(PolicyViolation):
        sse_guard_s3.put_object(Bucket=bucket, Key="k2", Body=b"x", ServerSideEncryption="AES256")
    assert sse_guard_guard.stats.refused == 1


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:5000/b/k", True),
        ("http://127.8.9.1/", True),
        ("http://[::1]:4566/", True),
        ("http://localhost:4566/", True),
        ("https://s3.amazonaws.com/b", False),
        ("https://localhost.example.com/", False),
        ("http://10.0.0.1/", False),
        ("http://127.0.0.1.nip.io/", False),
    ],
)
def test_only_loopback_hosts_count_as_loopback(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_the_recorder_hides_sse_c_keys_in_its_repr(sse_guard_s3: Any, sse_guard_bucket: BucketFactory, sse_guard_recorder: WireRecorder) -> None:
    bucket = sse_guard_bucket()
    sse_guard_s3.put_object(Bucket=bucket, Key="k", Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey=b"k" * 32)
    sent = sse_guard_recorder.one("PutObject")
    assert "x-amz-server-side-encryption-customer-key" in sent.sse
    assert sent.sse["x-amz-server-side-encryption-customer-key"] not in repr(sent)
    with pytest.raises(AssertionError) as excinfo:
        sse_guard_recorder.assert_sse("PutObject", "aws:kms")
    assert sent.sse["x-amz-server-side-encryption-customer-key"] not in str(excinfo.value)
    sse_guard_recorder.assert_sse("PutObject", "SSE-C")

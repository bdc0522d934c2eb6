"""An application's own tests, run with the guard on, through sse_guard's fixtures.

    cd examples/pytest_usage && python -m pytest

moto accepts almost anything, so the tests assert on what was sent on the wire
(``sse_guard_recorder``) and, where moto records it, on what was stored.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from reports import ReportStore

from sse_guard import Guard, PolicyViolation
from sse_guard.pytest_plugin import BucketFactory, LegacySeeder, MotoAWS, WireRecorder


@pytest.fixture
def store(sse_guard_session: boto3.Session, sse_guard_bucket: BucketFactory) -> ReportStore:
    # A bucket the policy's "acme-prod-*" rules match, with no default encryption.
    return ReportStore(sse_guard_session, sse_guard_bucket(name="acme-prod-reports"))


def test_customer_records_go_out_under_the_pii_key(
    store: ReportStore, sse_guard_aws: MotoAWS, sse_guard_recorder: WireRecorder
) -> None:
    key = store.save_customer("c-1", b"{}")
    # The policy names alias/acme-pii: the plugin created that key in moto.
    pii_key = sse_guard_aws.kms_key("alias/acme-pii")
    sse_guard_recorder.assert_sse("PutObject", "SSE-KMS", kms_key_id=pii_key.arn, bucket_key=True, key=key)


def test_public_files_get_the_fallback(store: ReportStore, sse_guard_recorder: WireRecorder) -> None:
    store.save_public("readme.txt", b"hello")
    assert sse_guard_recorder.sse_of("PutObject") == {"x-amz-server-side-encryption": "AES256"}


def test_a_legacy_object_archived_lands_encrypted(
    store: ReportStore,
    sse_guard_legacy: LegacySeeder,
    sse_guard_aws: MotoAWS,
    sse_guard_recorder: WireRecorder,
) -> None:
    old = sse_guard_legacy(keys=["2019/q1.csv"])
    target = store.archive(old.bucket, "2019/q1.csv")
    sse_guard_recorder.assert_sse("CopyObject", "AES256", key=target)
    stored = sse_guard_aws.client("s3").head_object(Bucket=store.bucket, Key=target)
    assert stored["ServerSideEncryption"] == "AES256"


def test_the_policy_refuses_an_explicit_downgrade(store: ReportStore, sse_guard_guard: Guard) -> None:
    # The policy file says mode = "enforce": a write asking for less than its rule is refused.
    s3: Any = store._s3
    with pytest.raises(PolicyViolation, match="SSE-KMS"):
        s3.put_object(Bucket=store.bucket, Key="pii/x.json", Body=b"{}", ServerSideEncryption="AES256")
    assert sse_guard_guard.stats.refused == 1


@pytest.mark.sse_guard(mode="audit")
def test_in_audit_mode_the_same_write_goes_through(
    store: ReportStore, sse_guard_guard: Guard, sse_guard_recorder: WireRecorder
) -> None:
    s3: Any = store._s3
    s3.put_object(Bucket=store.bucket, Key="pii/x.json", Body=b"{}", ServerSideEncryption="AES256")
    sse_guard_recorder.assert_sse("PutObject", "AES256", key="pii/x.json")
    assert sse_guard_guard.stats.audited == 1


@pytest.mark.sse_guard(policy={"rules": [{"bucket": "*", "algorithm": "aws:kms:dsse"}]})
def test_a_test_can_bring_its_own_policy(store: ReportStore, sse_guard_recorder: WireRecorder) -> None:
    store.save_public("x", b"x")
    sse_guard_recorder.assert_sse("PutObject", "DSSE-KMS")


@pytest.mark.sse_guard(server=True)
def test_the_same_on_the_moto_server(
    store: ReportStore, sse_guard_aws: MotoAWS, sse_guard_recorder: WireRecorder
) -> None:
    assert sse_guard_aws.endpoint_url is not None and sse_guard_aws.endpoint_url.startswith("http://127.0.0.1:")
    store.save_customer("c-2", b"{}")
    sse_guard_recorder.assert_sse("PutObject", "SSE-KMS", kms_key_id=sse_guard_aws.kms_key("alias/acme-pii").arn)

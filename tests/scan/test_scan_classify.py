"""Pure classification: what a HeadObject response says, judged against a requirement."""

from __future__ import annotations

import pytest

from sse_guard.scan import AdaptiveLimit, ScanRecord, client_side_format, judge, observe_head
from sse_guard.scan._records import RECORD_KEYS
from sse_guard.settings import DSSEKMS, SSEC, SSEKMS, SSES3, ClientSide

KEY_A = "arn:aws:kms:us-east-1:111122223333:key/aaaaaaaa-0000-0000-0000-000000000000"
KEY_B = "arn:aws:kms:us-east-1:111122223333:key/bbbbbbbb-0000-0000-0000-000000000000"


def same(a: str, b: str) -> bool:
    return a == b


@pytest.mark.parametrize(
    ("head", "cls"),
    [
        ({}, "NOT-SSE"),
        ({"ServerSideEncryption": "AES256"}, "SSE-S3"),
        ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KEY_A}, "SSE-KMS"),
        ({"ServerSideEncryption": "aws:kms:dsse", "SSEKMSKeyId": KEY_A}, "DSSE-KMS"),
        ({"ServerSideEncryption": "aws:fsx"}, "OTHER"),
        ({"ServerSideEncryption": "aws:backup"}, "OTHER"),
        ({"ServerSideEncryption": "aws:future"}, "OTHER"),
        ({"SSECustomerAlgorithm": "AES256", "SSECustomerKeyMD5": "bWQ1"}, "SSE-C"),
        ({"Metadata": {"x-amz-c": "115", "x-amz-3": "k"}}, "CLIENT-SIDE"),
    ],
)
def test_head_responses_map_to_the_documented_classes(head: dict[str, object], cls: str) -> None:
    assert observe_head(head).encryption == cls


@pytest.mark.parametrize(
    ("meta", "fmt"),
    [
        ({"x-amz-c": "115", "x-amz-3": "k", "x-amz-d": "d", "x-amz-i": "i"}, "v3"),
        ({"x-amz-c": "115", "x-amz-d": "d", "x-amz-i": "i"}, "v3+instruction-file"),
        ({"x-amz-key-v2": "k", "x-amz-cek-alg": "AES/GCM/NoPadding"}, "v2"),
        ({"x-amz-key-v2": "k", "x-amz-cek-alg": "AES/CBC/PKCS5Padding"}, "v2-legacy-cbc"),
        ({"x-amz-key": "k", "x-amz-iv": "iv"}, "v1"),
        ({"x-amz-crypto-instr-file": ""}, "v2+instruction-file"),
        ({"team": "payments"}, None),
        ({}, None),
    ],
)
def test_s3_encryption_client_formats_are_recognised_from_metadata(meta: dict[str, str], fmt: str | None) -> None:
    assert client_side_format(meta) == fmt


def test_dsse_under_the_required_key_meets_sse_kms_with_that_key() -> None:
    obs = observe_head({"ServerSideEncryption": "aws:kms:dsse", "SSEKMSKeyId": KEY_A})
    assert judge(SSEKMS(KEY_A), obs, same_key=same) is None


def test_sse_s3_and_another_key_fall_short_of_sse_kms_with_key_a() -> None:
    for head in ({"ServerSideEncryption": "AES256"}, {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KEY_B}, {}):
        assert judge(SSEKMS(KEY_A), observe_head(head), same_key=same) is not None


def test_any_kms_encryption_meets_sse_s3() -> None:
    for head in ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KEY_B}, {"ServerSideEncryption": "aws:kms:dsse"}):
        assert judge(SSES3(), observe_head(head), same_key=same) is None


def test_sse_kms_without_a_reported_key_is_not_assumed_to_be_the_required_one() -> None:
    reason = judge(SSEKMS(KEY_A), observe_head({"ServerSideEncryption": "aws:kms"}), same_key=same)
    assert reason is not None and "did not report" in reason


def test_dsse_is_required_and_sse_kms_falls_short() -> None:
    obs = observe_head({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KEY_A})
    assert judge(DSSEKMS(KEY_A), obs, same_key=same) is not None


def test_an_sse_c_object_falls_short_of_a_server_side_rule_with_a_reason() -> None:
    from sse_guard.scan import Observed

    reason = judge(SSES3(), Observed("SSE-C"), same_key=same)
    assert reason is not None and "SSE-C" in reason
    assert judge(SSEC(b"k" * 32), Observed("SSE-C"), same_key=same) is not None


def test_client_side_rule_needs_s3ec_metadata_and_a_readable_format() -> None:
    rule = ClientSide(keyring=object())  # type: ignore[arg-type]
    assert judge(rule, observe_head({"Metadata": {"x-amz-c": "115", "x-amz-3": "k"}}), same_key=same) is None
    assert judge(rule, observe_head({"ServerSideEncryption": "AES256"}), same_key=same) is not None
    v2 = observe_head({"Metadata": {"x-amz-key-v2": "k", "x-amz-cek-alg": "AES/GCM/NoPadding"}})
    assert judge(rule, v2, same_key=same) is not None  # readers requiring commitment refuse v2
    lenient = ClientSide(keyring=object(), commitment_policy="require-encrypt-allow-decrypt")  # type: ignore[arg-type]
    assert judge(lenient, v2, same_key=same) is None
    cbc = observe_head({"Metadata": {"x-amz-key-v2": "k", "x-amz-cek-alg": "AES/CBC/PKCS5Padding"}})
    assert judge(lenient, cbc, same_key=same) is not None


def test_record_json_keys_are_exactly_the_contract() -> None:
    rec = ScanRecord("b", "k", None, 1, "STANDARD", "NOT-SSE", None, None, None, None, False, "why")
    assert tuple(rec.to_dict()) == RECORD_KEYS
    err = ScanRecord.failed("b", "k", None, error="AccessDenied", reason="HeadObject failed")
    assert tuple(err.to_dict()) == (*RECORD_KEYS, "error")
    assert ScanRecord.from_dict(rec.to_dict()) == rec


def test_adaptive_limit_halves_on_throttle_once_per_burst_and_grows_back() -> None:
    now = [0.0]
    lim = AdaptiveLimit(32, 64, clock=lambda: now[0], cooldown=1.0)
    for _ in range(10):
        lim.on_throttle()
    assert lim.limit == 16 and lim.cuts == 1 and lim.throttles == 10
    now[0] = 5.0
    lim.on_throttle()
    assert lim.limit == 8
    for _ in range(200):
        lim.on_success()
    assert lim.limit > 8

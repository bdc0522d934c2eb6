"""The policy core: loading, matching and deciding, with no I/O."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from sse_guard import DSSEKMS, SSEC, SSEKMS, SSES3, ConfigurationError, Policy
from sse_guard.policy import BucketDefault, Given, decide, resolve_required, satisfies
from sse_guard.settings import FOLLOW_BUCKET, to_request_params

KEY_A = "arn:aws:kms:us-east-1:111122223333:key/aaaaaaaa-0000-0000-0000-000000000000"
KEY_B = "arn:aws:kms:us-east-1:111122223333:key/bbbbbbbb-0000-0000-0000-000000000000"

POLICY_TOML = """
mode = "enforce"
default = "follow-bucket"
on_lookup_error = "fallback"
cache_ttl_seconds = 60

[fallback]
algorithm = "AES256"

[[rules]]
bucket = "prod-*"
prefix = "pii/"
algorithm = "aws:kms"
kms_key_id = "KEY_A"
bucket_key = true

[[rules]]
bucket = "prod-*"
algorithm = "aws:kms:dsse"
""".replace("KEY_A", KEY_A)


def test_policy_file_in_the_documented_format_loads(tmp_path: Path) -> None:
    path = tmp_path / "sse-guard.toml"
    path.write_text(POLICY_TOML)
    policy = Policy.from_file(path)
    assert policy.mode == "enforce"
    assert policy.on_lookup_error == "fallback"
    assert policy.cache_ttl_seconds == 60
    assert policy.rule_for("prod-eu", "pii/a") == SSEKMS(key_id=KEY_A, bucket_key=True)
    assert policy.rule_for("prod-eu", "other") == DSSEKMS()
    assert policy.rule_for("dev", "pii/a") is FOLLOW_BUCKET


def test_pyproject_table_and_environment_variable_are_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.sse-guard]\nmode = "audit"\n')
    assert Policy.discover(tmp_path).mode == "audit"
    other = tmp_path / "p.toml"
    other.write_text('mode = "enforce"\n')
    monkeypatch.setenv("SSE_GUARD_POLICY", str(other))
    assert Policy.discover(tmp_path).mode == "enforce"


def test_no_policy_anywhere_means_follow_bucket(tmp_path: Path) -> None:
    policy = Policy.discover(tmp_path)
    assert policy.default is FOLLOW_BUCKET and policy.mode == "inject" and policy.on_lookup_error == "deny"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('[[rules]]\nbucket = "b*"\nalgorithm = "aws:kmss"\n', ["rules[0].algorithm", "aws:kmss"]),
        ('[[rules]]\nbucket = ""\nalgorithm = "AES256"\n', ["rules[0].bucket"]),
        ('[[rules]]\nbucket = "b"\nalgorithm = "SSE-C"\n', ["rules[0]", "key_file"]),
        ('[[rules]]\nbucket = "b"\nalgorithm = "client-side"\n', ["rules[0].keyring"]),
        ('[[rules]]\nbucket = "b"\nalgorithm = "AES256"\nkms_key_id = "k"\n', ["rules[0].kms_key_id", "AES256"]),
        ('[[rules]]\nbucket = "b"\nalgorithm = "aws:kms"\nbucket_key = "yes"\n', ["rules[0].bucket_key"]),
        ('[[rules]]\nbucket = "b"\nalgoritm = "AES256"\n', ["rules[0]", "algoritm"]),
        ('mode = "block"\n', ["mode", "block"]),
        ('on_lookup_error = "allow"\n', ["on_lookup_error"]),
        ('cache_ttl_seconds = -1\n', ["cache_ttl_seconds"]),
        ('[fallback]\nalgorithm = "SSE-C"\n', ["fallback.algorithm"]),
        ('default = "whatever"\n', ["default"]),
        ("rules = 3\n", ["rules"]),
        ("this is not toml", ["not valid TOML"]),
    ],
)
def test_malformed_policy_file_fails_at_load_naming_file_rule_and_field(tmp_path: Path, text: str, names: list[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        Policy.from_file(path)
    message = str(info.value)
    assert str(path) in message
    for name in names:
        assert name in message


def test_sse_c_key_comes_from_a_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = os.urandom(32)
    (tmp_path / "k.bin").write_bytes(raw)
    monkeypatch.setenv("MY_SSE_C", base64.b64encode(raw).decode())
    from_file = Policy.from_dict({"rules": [{"bucket": "b", "algorithm": "SSE-C", "key_file": "k.bin"}]}, base_dir=tmp_path)
    from_env = Policy.from_dict({"rules": [{"bucket": "b", "algorithm": "SSE-C", "key_env": "MY_SSE_C"}]})
    assert from_file.rules[0].encryption == from_env.rules[0].encryption == SSEC(raw)
    assert raw.hex() not in repr(from_file) and repr(raw) not in repr(from_file)


def test_sse_c_key_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    (tmp_path / "k.bin").write_bytes(b"short")
    with pytest.raises(ConfigurationError, match=r"rules\[0\]\.key_file"):
        Policy.from_dict({"rules": [{"bucket": "b", "algorithm": "SSE-C", "key_file": "k.bin"}]}, base_dir=tmp_path)


def test_first_matching_rule_wins_and_globs_match_whole_names() -> None:
    policy = Policy.from_dict(
        {
            "rules": [
                {"bucket": "logs-?", "algorithm": "AES256"},
                {"bucket": "logs-*", "prefix": "a/", "algorithm": "aws:kms:dsse"},
                {"bucket": "logs-*", "algorithm": "aws:kms"},
            ]
        }
    )
    assert policy.rule_for("logs-1", "a/x") == SSES3()
    assert policy.rule_for("logs-12", "a/x") == DSSEKMS()
    assert policy.rule_for("logs-12", "b/x") == SSEKMS()
    assert policy.rule_for("xlogs-12", "a/x") is FOLLOW_BUCKET


def test_follow_bucket_uses_the_bucket_default_then_the_fallback() -> None:
    policy = Policy(fallback=SSEKMS(key_id=KEY_B))
    assert resolve_required(policy, FOLLOW_BUCKET, BucketDefault(DSSEKMS(KEY_A))) == DSSEKMS(KEY_A)
    assert resolve_required(policy, FOLLOW_BUCKET, BucketDefault(None)) == SSEKMS(key_id=KEY_B)
    assert resolve_required(policy, SSES3(), BucketDefault(DSSEKMS(KEY_A))) == SSES3()


def same(a: str, b: str) -> bool:
    return a == b


@pytest.mark.parametrize(
    ("required", "given", "ok"),
    [
        (SSEKMS(key_id=KEY_A), Given("AES256"), False),
        (SSEKMS(key_id=KEY_A), Given("aws:kms", KEY_B), False),
        (SSEKMS(key_id=KEY_A), Given("aws:kms", KEY_A), True),
        (SSEKMS(key_id=KEY_A), Given("aws:kms:dsse", KEY_A), True),
        (SSEKMS(key_id=KEY_A), Given(sse_c_key_md5="x"), False),
        (DSSEKMS(KEY_A), Given("aws:kms", KEY_A), False),
        (SSES3(), Given("aws:kms", KEY_B), True),
        (SSES3(), Given("aws:fsx"), False),
        (SSEKMS(), Given("aws:kms", KEY_B), True),
        (SSEC(b"k" * 32), Given("AES256"), False),
        (SSEC(b"k" * 32), Given(sse_c_key_md5=SSEC(b"k" * 32).key_md5), True),
        (SSEC(b"k" * 32), Given(sse_c_key_md5=SSEC(b"j" * 32).key_md5), False),
    ],
)
def test_an_explicit_encryption_meets_the_rule_only_when_as_strong_and_same_key(required, given, ok) -> None:  # type: ignore[no-untyped-def]
    assert (satisfies(required, given, same_key=same) is None) is ok


def test_a_write_without_parameters_gets_the_whole_rule() -> None:
    required = SSEKMS(key_id=KEY_A, bucket_key=True)
    decision = decide("b", Given(), required)
    assert decision.add == to_request_params(required)
    assert decision.add == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KEY_A, "BucketKeyEnabled": True}


def test_a_partial_kms_request_is_completed_with_the_rules_key_and_bucket_key() -> None:
    decision = decide("b", Given("aws:kms"), SSEKMS(key_id=KEY_A, bucket_key=True))
    assert decision.shortfall is None
    assert decision.add == {"SSEKMSKeyId": KEY_A, "BucketKeyEnabled": True}


def test_sse_c_is_never_injected_into_a_bucket_that_blocks_it() -> None:
    decision = decide("b", Given(), SSEC(b"k" * 32), bucket_default=BucketDefault(None, blocks_sse_c=True))
    assert decision.impossible and not decision.add
    explicit = decide("b", Given(sse_c_key_md5="x"), SSES3(), bucket_default=BucketDefault(SSES3(), blocks_sse_c=True))
    assert explicit.shortfall and "blocks SSE-C" in explicit.shortfall


def test_directory_buckets_refuse_dsse_and_sse_c() -> None:
    assert decide("fast--use1-az4--x-s3", Given(), DSSEKMS()).impossible
    assert decide("fast--use1-az4--x-s3", Given(), SSEC(b"k" * 32)).impossible
    assert decide("fast--use1-az4--x-s3", Given(), SSES3()).add == {"ServerSideEncryption": "AES256"}


def test_aliases_are_listed_for_resolution_and_replaced_by_arns() -> None:
    policy = Policy.from_dict({"rules": [{"bucket": "b", "algorithm": "aws:kms", "kms_key_id": "alias/app"}, {"bucket": "c", "algorithm": "aws:kms", "kms_key_id": KEY_A}]})
    assert policy.kms_key_ids_to_resolve() == {"alias/app"}
    resolved = policy.with_kms_key_arns({"alias/app": KEY_B})
    assert resolved.rule_for("b", "k") == SSEKMS(key_id=KEY_B)
    assert resolved.rule_for("c", "k") == SSEKMS(key_id=KEY_A)

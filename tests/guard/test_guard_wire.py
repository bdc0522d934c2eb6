"""What a guarded client really sends, for every write path, in both moto modes."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import threading
import urllib.parse
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

import sse_guard
from backends import Backend, Wire, sse_headers
from sse_guard import BucketEncryptionLookupError, ConfigurationError, Policy, PolicyViolation

MiB = 1024 * 1024
SSE = "x-amz-server-side-encryption"


def kms_key(backend: Backend, alias: str | None = None) -> str:
    kms = backend.client("kms")
    arn: str = kms.create_key(Description="test")["KeyMetadata"]["Arn"]
    if alias:
        kms.create_alias(AliasName=alias, TargetKeyId=arn)
    return arn


def make_bucket(backend: Backend, default: dict[str, Any] | None = None, *, bucket_key: bool = False, versioned: bool = False) -> str:
    s3 = backend.client("s3")
    name = backend.bucket()
    s3.create_bucket(Bucket=name)
    if default is not None:
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": bucket_key}]},
        )
    return name


def guarded(backend: Backend, wire: Wire, policy: Policy | None = None, **kwargs: Any) -> tuple[sse_guard.Guard, Any]:
    session = backend.session()
    guard = sse_guard.register(session, policy=policy or Policy(), **kwargs)
    client = wire.attach(session.client("s3"))
    return guard, client


def test_put_object_carries_the_bucket_default_kms_key_and_bucket_key(backend: Backend, wire: Wire) -> None:
    key = kms_key(backend)
    bucket = make_bucket(backend, {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}, bucket_key=True)
    guard, s3 = guarded(backend, wire)
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"hello")
    assert sse_headers(wire.one("PutObject")) == {
        SSE: "aws:kms",
        f"{SSE}-aws-kms-key-id": key,
        f"{SSE}-bucket-key-enabled": "true",
    }
    assert s3.head_object(Bucket=bucket, Key="a.txt")["ServerSideEncryption"] == "aws:kms"
    assert guard.stats.injected == 1 and guard.stats.lookups == 1


@pytest.mark.strict_s3
def test_a_bucket_without_configuration_gets_the_fallback(backend: Backend, wire: Wire) -> None:
    bucket = make_bucket(backend)
    _, s3 = guarded(backend, wire, Policy.from_dict({"fallback": {"algorithm": "AES256"}}))
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert sse_headers(wire.one("PutObject")) == {SSE: "AES256"}
    assert s3.head_object(Bucket=bucket, Key="k")["ServerSideEncryption"] == "AES256"


def test_a_rule_alias_goes_out_as_the_key_arn(backend: Backend, wire: Wire) -> None:
    arn = kms_key(backend, alias="alias/app")
    bucket = make_bucket(backend)
    policy = Policy.from_dict({"rules": [{"bucket": bucket, "prefix": "pii/", "algorithm": "aws:kms", "kms_key_id": "alias/app"}]})
    guard, s3 = guarded(backend, wire, policy)
    s3.put_object(Bucket=bucket, Key="pii/x", Body=b"x")
    assert sse_headers(wire.one("PutObject"))[f"{SSE}-aws-kms-key-id"] == arn
    assert guard.policy.rules[0].encryption.key_id == arn  # type: ignore[union-attr]


def test_an_alias_that_does_not_resolve_fails_at_registration(backend: Backend) -> None:
    policy = Policy.from_dict({"rules": [{"bucket": "b*", "algorithm": "aws:kms", "kms_key_id": "alias/missing"}]})
    with pytest.raises(ConfigurationError, match="alias/missing"):
        sse_guard.register(backend.session(), policy=policy)


def test_inject_mode_leaves_the_callers_explicit_choice_alone(backend: Backend, wire: Wire) -> None:
    key = kms_key(backend)
    bucket = make_bucket(backend, {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key})
    guard, s3 = guarded(backend, wire)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="AES256")
    assert sse_headers(wire.one("PutObject")) == {SSE: "AES256"}
    assert guard.stats.left_alone == 1 and guard.stats.injected == 0


def test_enforce_mode_refuses_a_weaker_write_before_sending_it(backend: Backend, wire: Wire) -> None:
    key = kms_key(backend)
    bucket = make_bucket(backend, {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key})
    guard, s3 = guarded(backend, wire, mode="enforce")
    with pytest.raises(PolicyViolation) as info:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="AES256")
    assert info.value.bucket == bucket and info.value.operation == "PutObject"
    other = kms_key(backend)
    with pytest.raises(PolicyViolation, match="SSE-KMS"):
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=other)
    assert wire.of("PutObject") == []
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=key.split("/")[-1])
    assert sse_headers(wire.one("PutObject"))[SSE] == "aws:kms"
    assert guard.stats.refused == 2


def test_audit_mode_sends_unchanged_and_reports(backend: Backend, wire: Wire, caplog: pytest.LogCaptureFixture) -> None:
    bucket = make_bucket(backend, {"SSEAlgorithm": "AES256"})
    guard, s3 = guarded(backend, wire, mode="audit")
    with caplog.at_level(logging.WARNING, logger="sse_guard"):
        s3.put_object(Bucket=bucket, Key="k", Body=b"secret-body")
    assert sse_headers(wire.one("PutObject")) == {}
    assert guard.stats.audited == 1 and guard.stats.injected == 0
    assert "would inject ServerSideEncryption" in caplog.text
    assert "secret-body" not in caplog.text


def test_a_denied_lookup_sends_nothing(backend: Backend, wire: Wire) -> None:
    bucket = make_bucket(backend)
    guard, s3 = guarded(backend, wire)
    s3.meta.events.register("before-call.s3.GetBucketEncryption", _answer_403)
    with pytest.raises(BucketEncryptionLookupError, match="AccessDenied") as info:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert isinstance(info.value.__cause__, ClientError)
    assert wire.of("PutObject") == []
    assert guard.stats.lookup_failures == 1
    # not cached: the next write asks again
    with pytest.raises(BucketEncryptionLookupError):
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert guard.stats.lookups == 2


def test_a_network_error_on_lookup_fails_closed_or_falls_back_when_told(backend: Backend, wire: Wire) -> None:
    bucket = make_bucket(backend)
    session = backend.session()
    s3 = wire.attach(session.client("s3", config=Config(retries={"max_attempts": 2, "mode": "standard"})))
    s3.meta.events.register("before-send.s3.GetBucketEncryption", _unreachable)
    guard = sse_guard.register(s3, policy=Policy())
    with pytest.raises(BucketEncryptionLookupError):
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert wire.of("PutObject") == []
    guard.unregister()
    sse_guard.register(s3, policy=Policy.from_dict({"on_lookup_error": "fallback", "fallback": {"algorithm": "aws:kms:dsse"}}))
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert sse_headers(wire.one("PutObject")) == {SSE: "aws:kms:dsse"}


def _answer_403(**kwargs: Any) -> tuple[AWSResponse, dict[str, Any]]:
    return AWSResponse("https://example.invalid", 403, {}, None), {
        "Error": {"Code": "AccessDenied", "Message": "Access Denied"},
        "ResponseMetadata": {"HTTPStatusCode": 403},
    }


def _unreachable(request: Any, **kwargs: Any) -> None:
    raise EndpointConnectionError(endpoint_url=request.url)


def test_32_threads_writing_to_a_cold_bucket_make_one_lookup(backend: Backend, wire: Wire) -> None:
    bucket = make_bucket(backend, {"SSEAlgorithm": "AES256"})
    guard, s3 = guarded(backend, wire)
    barrier = threading.Barrier(32)
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            barrier.wait()
            s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(wire.of("GetBucketEncryption")) == 1
    puts = wire.of("PutObject")
    assert len(puts) == 32 and all(p.headers[SSE] == "AES256" for p in puts)
    assert guard.stats.lookups == 1 and guard.stats.cache_hits + guard.stats.coalesced == 31


def test_the_cache_expires_and_can_be_invalidated(backend: Backend, wire: Wire) -> None:
    bucket = make_bucket(backend, {"SSEAlgorithm": "AES256"})
    guard, s3 = guarded(backend, wire, Policy(cache_ttl_seconds=3600))
    s3.put_object(Bucket=bucket, Key="a", Body=b"x")
    backend.client("s3").put_bucket_encryption(
        Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms:dsse"}}]}
    )
    s3.put_object(Bucket=bucket, Key="b", Body=b"x")
    assert guard.invalidate(bucket) == 1
    s3.put_object(Bucket=bucket, Key="c", Body=b"x")
    assert [p.headers[SSE] for p in wire.of("PutObject")] == ["AES256", "AES256", "aws:kms:dsse"]


def test_two_endpoints_never_share_a_cache_entry(backend: Backend) -> None:
    from sse_guard.guard import ClientBinding

    session = backend.session()
    guard = sse_guard.Guard(Policy())
    a = session.client("s3", region_name="us-east-1")
    b = session.client("s3", region_name="eu-west-1")
    c = session.client("s3", region_name="us-east-1", aws_access_key_id="other", aws_secret_access_key="x")
    keys = {ClientBinding(guard, cl)._cache_key("bkt") for cl in (a, b, c)}
    assert len(keys) == 3


def test_copy_object_gets_the_destination_encryption_and_the_source_sse_c_key(backend: Backend, wire: Wire) -> None:
    src_bucket = make_bucket(backend)
    dst_bucket = make_bucket(backend, {"SSEAlgorithm": "aws:kms:dsse"})
    raw = os.urandom(32)
    policy = Policy.from_dict(
        {"rules": [{"bucket": src_bucket, "algorithm": "SSE-C", "key_env": "TEST_SSE_C"}]},
    ) if _set_env_key(raw) else Policy()
    _, s3 = guarded(backend, wire, policy)
    s3.put_object(Bucket=src_bucket, Key="s", Body=b"data")
    s3.copy_object(Bucket=dst_bucket, Key="d", CopySource={"Bucket": src_bucket, "Key": "s"})
    sent = wire.one("CopyObject").headers
    assert sent[SSE] == "aws:kms:dsse"
    assert sent["x-amz-copy-source-server-side-encryption-customer-algorithm"] == "AES256"
    assert base64.b64decode(sent["x-amz-copy-source-server-side-encryption-customer-key"]) == raw
    assert sent["x-amz-copy-source-server-side-encryption-customer-key-md5"] == _md5(raw)


def _set_env_key(raw: bytes) -> bool:
    os.environ["TEST_SSE_C"] = base64.b64encode(raw).decode()
    return True


def _md5(raw: bytes) -> str:
    return base64.b64encode(hashlib.md5(raw).digest()).decode()


@pytest.mark.strict_s3
def test_a_raw_sse_c_key_from_policy_passes_botocores_sse_c_handler_on_every_request(backend: Backend, wire: Wire, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = os.urandom(32)
    monkeypatch.setenv("TEST_SSE_C", base64.b64encode(raw).decode())
    bucket = make_bucket(backend)
    policy = Policy.from_dict({"rules": [{"bucket": bucket, "algorithm": "SSE-C", "key_env": "TEST_SSE_C"}]})
    _, s3 = guarded(backend, wire, policy)
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"secret"
    for op in ("PutObject", "GetObject"):
        headers = wire.one(op).headers
        assert headers[f"{SSE}-customer-algorithm"] == "AES256"
        assert base64.b64decode(headers[f"{SSE}-customer-key"]) == raw
        assert headers[f"{SSE}-customer-key-md5"] == _md5(raw)
    if backend.strict:  # only a strict S3 checks the key: without it the read must fail
        plain = backend.client("s3")
        with pytest.raises(ClientError):
            plain.get_object(Bucket=bucket, Key="k")


@pytest.mark.strict_s3
def test_upload_file_of_20_mib_carries_sse_on_create_and_none_on_parts(backend: Backend, wire: Wire, tmp_path: Any) -> None:
    key = kms_key(backend)
    bucket = make_bucket(backend)
    policy = Policy.from_dict({"rules": [{"bucket": bucket, "algorithm": "aws:kms", "kms_key_id": key, "bucket_key": True}]})
    _, s3 = guarded(backend, wire, policy)
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(20 * MiB))
    s3.upload_file(str(path), bucket, "big.bin", Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    create = sse_headers(wire.one("CreateMultipartUpload"))
    assert create == {SSE: "aws:kms", f"{SSE}-aws-kms-key-id": key, f"{SSE}-bucket-key-enabled": "true"}
    parts = wire.of("UploadPart")
    assert len(parts) == 4 and all(sse_headers(p) == {} for p in parts)
    assert sse_headers(wire.one("CompleteMultipartUpload")) == {}
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ServerSideEncryption"] == "aws:kms" and head["ContentLength"] == 20 * MiB


@pytest.mark.strict_s3
def test_multipart_sse_c_repeats_the_key_on_every_part(backend: Backend, wire: Wire, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = os.urandom(32)
    monkeypatch.setenv("TEST_SSE_C", base64.b64encode(raw).decode())
    bucket = make_bucket(backend)
    policy = Policy.from_dict({"rules": [{"bucket": bucket, "algorithm": "SSE-C", "key_env": "TEST_SSE_C"}]})
    _, s3 = guarded(backend, wire, policy)
    body = os.urandom(11 * MiB)
    s3.upload_fileobj(io.BytesIO(body), bucket, "mp", Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    for sent in [wire.one("CreateMultipartUpload"), *wire.of("UploadPart"), wire.one("CompleteMultipartUpload")]:
        assert sent.headers[f"{SSE}-customer-key-md5"] == _md5(raw), sent.operation
    assert len(wire.of("UploadPart")) == 3
    out = io.BytesIO()
    s3.download_fileobj(bucket, "mp", out)
    assert out.getvalue() == body


def test_the_resource_api_and_managed_copy_are_guarded(backend: Backend, wire: Wire, tmp_path: Any) -> None:
    bucket = make_bucket(backend, {"SSEAlgorithm": "aws:kms:dsse"})
    session = backend.session()
    sse_guard.register(session, policy=Policy())
    resource = session.resource("s3")
    wire.attach(resource.meta.client)
    resource.Object(bucket, "a").put(Body=b"x")
    path = tmp_path / "f.txt"
    path.write_bytes(b"file")
    resource.Bucket(bucket).upload_file(str(path), "b")
    resource.meta.client.copy({"Bucket": bucket, "Key": "a"}, bucket, "c")
    puts = wire.of("PutObject")
    assert [p.headers[SSE] for p in puts] == ["aws:kms:dsse", "aws:kms:dsse"]
    assert wire.one("CopyObject").headers[SSE] == "aws:kms:dsse"


def test_bucket_key_is_added_to_a_managed_upload_that_cannot_carry_it(backend: Backend, wire: Wire, tmp_path: Any) -> None:
    key = kms_key(backend)
    bucket = make_bucket(backend)
    policy = Policy.from_dict({"rules": [{"bucket": bucket, "algorithm": "aws:kms", "kms_key_id": key, "bucket_key": True}]})
    _, s3 = guarded(backend, wire, policy)
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="BucketKeyEnabled"):
        s3.upload_file(str(path), bucket, "k", ExtraArgs={"BucketKeyEnabled": True})
    s3.upload_file(str(path), bucket, "k", ExtraArgs={"ServerSideEncryption": "aws:kms"})
    assert sse_headers(wire.one("PutObject")) == {SSE: "aws:kms", f"{SSE}-aws-kms-key-id": key, f"{SSE}-bucket-key-enabled": "true"}


def test_a_presigned_put_signs_the_sse_header(backend: Backend, wire: Wire) -> None:
    bucket = make_bucket(backend)
    key = kms_key(backend)
    session = backend.session()
    policy = Policy.from_dict({"rules": [{"bucket": bucket, "algorithm": "aws:kms", "kms_key_id": key}]})
    sse_guard.register(session, policy=policy)
    s3 = wire.attach(session.client("s3", config=Config(signature_version="s3v4")))
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up"})
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["X-Amz-SignedHeaders"][0].split(";") == ["host", SSE, f"{SSE}-aws-kms-key-id"]
    assert wire.sent == []  # presigning made no network call


def test_presigning_a_follow_bucket_put_makes_no_network_call_when_cold(backend: Backend, wire: Wire) -> None:
    bucket = make_bucket(backend, {"SSEAlgorithm": "AES256"})
    guard, s3 = guarded(backend, wire)
    s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up"})
    assert wire.sent == [] and guard.stats.presign_unresolved == 1
    s3.put_object(Bucket=bucket, Key="warm", Body=b"x")  # warms the cache
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up"})
    assert "x-amz-server-side-encryption=AES256" in url


def test_a_presigned_post_gains_the_sse_field_and_its_condition(backend: Backend, wire: Wire) -> None:
    bucket = make_bucket(backend)
    key = kms_key(backend)
    policy = Policy.from_dict({"rules": [{"bucket": bucket, "prefix": "in/", "algorithm": "aws:kms", "kms_key_id": key}]})
    _, s3 = guarded(backend, wire, policy)
    post = s3.generate_presigned_post(bucket, "in/${filename}")
    assert post["fields"][SSE] == "aws:kms"
    assert post["fields"][f"{SSE}-aws-kms-key-id"] == key
    import json

    conditions = json.loads(base64.b64decode(post["fields"]["policy"]))["conditions"]
    assert {SSE: "aws:kms"} in conditions and {f"{SSE}-aws-kms-key-id": key} in conditions


def test_presigning_client_side_or_sse_c_is_refused(backend: Backend, wire: Wire, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SSE_C", base64.b64encode(os.urandom(32)).decode())
    bucket = make_bucket(backend)
    policy = Policy.from_dict({"rules": [{"bucket": bucket, "algorithm": "SSE-C", "key_env": "TEST_SSE_C"}]})
    _, s3 = guarded(backend, wire, policy)
    with pytest.raises(PolicyViolation, match="presigned"):
        s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up"})
    with pytest.raises(PolicyViolation, match="presigned POST"):
        s3.generate_presigned_post(bucket, "up")


def test_sse_c_is_not_injected_where_the_bucket_blocks_it(backend: Backend, wire: Wire, monkeypatch: pytest.MonkeyPatch) -> None:
    # moto drops BlockedEncryptionTypes, so the bucket's answer is given here as S3 sends it.
    monkeypatch.setenv("TEST_SSE_C", base64.b64encode(os.urandom(32)).decode())
    bucket = make_bucket(backend)
    policy = Policy.from_dict({"rules": [{"bucket": bucket, "prefix": "c/", "algorithm": "SSE-C", "key_env": "TEST_SSE_C"}]})
    _, s3 = guarded(backend, wire, policy, mode="enforce")
    s3.meta.events.register("before-call.s3.GetBucketEncryption", _blocks_sse_c)
    with pytest.raises(PolicyViolation, match="blocks SSE-C"):
        s3.put_object(Bucket=bucket, Key="c/k", Body=b"x")
    with pytest.raises(PolicyViolation, match="blocks SSE-C"):
        s3.put_object(Bucket=bucket, Key="other", Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey=os.urandom(32))
    assert wire.of("PutObject") == []
    s3.put_object(Bucket=bucket, Key="other", Body=b"x")
    assert sse_headers(wire.one("PutObject")) == {SSE: "AES256"}


def _blocks_sse_c(**kwargs: Any) -> tuple[AWSResponse, dict[str, Any]]:
    return AWSResponse("https://example.invalid", 200, {}, None), {
        "ServerSideEncryptionConfiguration": {
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]}}]
        },
        "ResponseMetadata": {"HTTPStatusCode": 200},
    }


def test_access_points_fail_closed_unless_a_rule_or_the_fallback_applies(backend: Backend, wire: Wire) -> None:
    ap = "arn:aws:s3:us-east-1:123456789012:accesspoint/my-ap"
    guard, s3 = guarded(backend, wire)
    with pytest.raises(BucketEncryptionLookupError, match="access point"):
        s3.put_object(Bucket=ap, Key="k", Body=b"x")
    assert wire.sent == []
    guard.unregister()
    guard = sse_guard.register(s3, policy=Policy.from_dict({"rules": [{"bucket": "arn:aws:s3:*:accesspoint/my-ap", "algorithm": "aws:kms:dsse"}]}))
    s3.meta.events.register("before-send.s3", _refuse_sending, unique_id="refuse")
    with pytest.raises(_Sent) as info:
        s3.put_object(Bucket=ap, Key="k", Body=b"x")
    assert info.value.headers[SSE] == "aws:kms:dsse"


class _Sent(Exception):
    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("request captured")
        self.headers = headers


def _refuse_sending(request: Any, **kwargs: Any) -> None:
    raise _Sent({k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()})


def test_directory_buckets_refuse_dsse_with_a_reason(backend: Backend, wire: Wire) -> None:
    policy = Policy.from_dict({"rules": [{"bucket": "*--x-s3", "algorithm": "aws:kms:dsse"}]})
    _, s3 = guarded(backend, wire, policy)
    with pytest.raises(PolicyViolation, match="directory buckets"):
        s3.put_object(Bucket="fast--use1-az4--x-s3", Key="k", Body=b"x")


def test_crt_transfer_client_is_refused_and_auto_is_forced_classic(backend: Backend, wire: Wire, tmp_path: Any) -> None:
    bucket = make_bucket(backend, {"SSEAlgorithm": "AES256"})
    _, s3 = guarded(backend, wire)
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with pytest.raises(ConfigurationError, match="CRT"):
        s3.upload_file(str(path), bucket, "k", Config=TransferConfig(preferred_transfer_client="crt"))
    seen: list[str] = []
    import boto3.s3.transfer as transfer

    real = transfer.create_transfer_manager

    def spy(client: Any, config: Any, osutil: Any = None) -> Any:
        seen.append(config.preferred_transfer_client)
        return real(client, config, osutil)

    transfer.create_transfer_manager = spy
    try:
        s3.upload_file(str(path), bucket, "k", Config=TransferConfig(preferred_transfer_client="auto"))
        s3.upload_file(str(path), bucket, "k2")
    finally:
        transfer.create_transfer_manager = real
    assert seen == ["classic", "classic"]
    assert [p.headers[SSE] for p in wire.of("PutObject")] == ["AES256", "AES256"]


@pytest.mark.strict_s3
def test_a_multipart_copy_from_an_sse_c_source_carries_both_keys_on_every_part(backend: Backend, wire: Wire, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = os.urandom(32)
    monkeypatch.setenv("TEST_SSE_C", base64.b64encode(raw).decode())
    src = make_bucket(backend)
    dst = make_bucket(backend)
    policy = Policy.from_dict({"rules": [{"bucket": src, "algorithm": "SSE-C", "key_env": "TEST_SSE_C"}, {"bucket": dst, "algorithm": "aws:kms:dsse"}]})
    _, s3 = guarded(backend, wire, policy)
    body = os.urandom(11 * MiB)
    s3.upload_fileobj(io.BytesIO(body), src, "big", Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    wire.clear()
    s3.copy({"Bucket": src, "Key": "big"}, dst, "copy", Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    assert wire.one("CreateMultipartUpload").headers[SSE] == "aws:kms:dsse"
    part_copies = wire.of("UploadPartCopy")
    assert len(part_copies) == 3
    for sent in part_copies:
        assert sent.headers["x-amz-copy-source-server-side-encryption-customer-key-md5"] == _md5(raw)
        assert f"{SSE}-customer-key" not in sent.headers  # the destination is not SSE-C
    assert wire.one("HeadObject").headers[f"{SSE}-customer-key-md5"] == _md5(raw)
    got = s3.get_object(Bucket=dst, Key="copy")
    assert got["Body"].read() == body


def test_enforce_refuses_a_weak_managed_upload_before_any_part_is_sent(backend: Backend, wire: Wire, tmp_path: Any) -> None:
    key = kms_key(backend)
    bucket = make_bucket(backend, {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key})
    _, s3 = guarded(backend, wire, mode="enforce")
    path = tmp_path / "big"
    path.write_bytes(os.urandom(6 * MiB))
    with pytest.raises(PolicyViolation):
        s3.upload_file(str(path), bucket, "big", ExtraArgs={"ServerSideEncryption": "AES256"}, Config=TransferConfig(multipart_threshold=5 * MiB))
    assert [s.operation for s in wire.sent] == ["GetBucketEncryption"]
    assert backend.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_throttled_lookup_is_retried_by_botocore_and_counted_once(backend: Backend, wire: Wire) -> None:
    bucket = make_bucket(backend, {"SSEAlgorithm": "AES256"})
    session = backend.session()
    s3 = wire.attach(session.client("s3", config=Config(retries={"max_attempts": 4, "mode": "standard"})))
    throttled = {"left": 2}

    def slow_down(request: Any, **kwargs: Any) -> AWSResponse | None:
        if throttled["left"]:
            throttled["left"] -= 1
            return AWSResponse(request.url, 503, {}, _Body(b"<Error><Code>SlowDown</Code><Message>Reduce your request rate</Message></Error>"))
        return None

    s3.meta.events.register_first("before-send.s3.GetBucketEncryption", slow_down)
    guard = sse_guard.register(s3, policy=Policy())
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert len(wire.of("GetBucketEncryption")) == 3
    assert sse_headers(wire.one("PutObject")) == {SSE: "AES256"}
    assert guard.stats.lookups == 1 and guard.stats.lookup_failures == 0


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **kwargs: Any) -> Any:
        yield self.data


def test_explicit_sse_c_with_another_key_is_refused_in_enforce_mode_on_every_operation(backend: Backend, wire: Wire, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SSE_C", base64.b64encode(os.urandom(32)).decode())
    bucket = make_bucket(backend)
    policy = Policy.from_dict({"rules": [{"bucket": bucket, "algorithm": "SSE-C", "key_env": "TEST_SSE_C"}]})
    _, s3 = guarded(backend, wire, policy, mode="enforce")
    other = os.urandom(32)
    with pytest.raises(PolicyViolation, match="another key"):
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey=other)
    with pytest.raises(PolicyViolation, match="another key"):
        s3.upload_part(Bucket=bucket, Key="k", UploadId="u", PartNumber=1, Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey=other)
    assert [s.operation for s in wire.sent] == ["GetBucketEncryption"]  # for its SSE-C block

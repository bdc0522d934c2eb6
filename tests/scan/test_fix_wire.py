"""The fixer on the wire: what it sends, what it keeps, what it refuses to touch."""

from __future__ import annotations

from typing import Any

import pytest
from scan_helpers import Faults, Keys, alias_of, kms_a_policy

from sse_guard.policy import Policy
from sse_guard.scan import Fixer, FixResult, Scanner, ScanRecord, make_classifier, make_s3_client

MiB = 1024 * 1024
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def client(backend: Any) -> Any:
    return make_s3_client(backend.session(), max_pool_connections=16)


def scan_and_fix(backend: Any, s3: Any, policy: Policy, bucket: str, **fix_kw: Any) -> tuple[list[ScanRecord], list[FixResult]]:
    classifier = make_classifier(s3, policy, kms_client=backend.client("kms"))
    records = list(Scanner(s3, classifier=classifier, workers=2, max_workers=4).scan([f"s3://{bucket}"]))
    fixer = Fixer(s3, classifier, workers=2, **fix_kw)
    results = list(fixer.fix(records))
    assert len(results) == sum(r.is_finding for r in records)  # one result per finding
    return records, results


def test_round_trip_keeps_content_metadata_tags_storage_class_acl_and_other_versions(
    backend: Any, kms_keys: Keys, wire: Any
) -> None:
    s3 = client(backend)
    bucket = backend.bucket("roundtrip")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"old content")["VersionId"]
    cur = s3.put_object(
        Bucket=bucket,
        Key="doc.txt",
        Body=b"current content",
        ContentType="text/plain; charset=utf-8",
        CacheControl="max-age=60",
        ContentDisposition="attachment",
        Metadata={"team": "payments", "origin": "legacy"},
        Tagging="a=1&b=two",
        StorageClass="STANDARD_IA",
        ChecksumAlgorithm="SHA256",
    )["VersionId"]
    s3.put_object_acl(Bucket=bucket, Key="doc.txt", VersionId=cur, GrantRead=f'uri="{ALL_USERS}"', GrantFullControl=f"id={s3.get_object_acl(Bucket=bucket, Key='doc.txt')['Owner']['ID']}")
    etag = s3.head_object(Bucket=bucket, Key="doc.txt")["ETag"]
    wire.attach(s3)

    _, results = scan_and_fix(backend, s3, kms_a_policy(backend, kms_keys), bucket, apply=True)

    (result,) = results
    assert result.status == "fixed", result
    assert old not in result.reason and cur in result.reason  # the previous version is reported
    copy = wire.one("CopyObject").headers
    assert copy["x-amz-grant-read"] == f'uri="{ALL_USERS}"'  # grants ride on the copy itself
    assert copy["x-amz-copy-source"].endswith(f"?versionId={cur}")
    assert copy["x-amz-copy-source-if-match"] == etag
    assert copy["if-match"] == etag
    assert copy["x-amz-metadata-directive"] == "COPY"
    assert copy["x-amz-tagging-directive"] == "COPY"
    assert copy["x-amz-storage-class"] == "STANDARD_IA"
    assert copy["x-amz-checksum-algorithm"] == "SHA256"
    assert copy["x-amz-server-side-encryption"] == "aws:kms"
    assert copy["x-amz-server-side-encryption-aws-kms-key-id"] == kms_keys.a

    head = s3.head_object(Bucket=bucket, Key="doc.txt")
    assert head["VersionId"] == result.new_version_id
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["ContentType"] == "text/plain; charset=utf-8"
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentDisposition"] == "attachment"
    assert head["Metadata"] == {"team": "payments", "origin": "legacy"}
    assert head["StorageClass"] == "STANDARD_IA"
    assert s3.get_object(Bucket=bucket, Key="doc.txt")["Body"].read() == b"current content"
    tags = s3.get_object_tagging(Bucket=bucket, Key="doc.txt")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("a", "1"), ("b", "two")]
    grants = s3.get_object_acl(Bucket=bucket, Key="doc.txt")["Grants"]
    assert any(g["Grantee"].get("URI") == ALL_USERS and g["Permission"] == "READ" for g in grants)
    # Nothing was deleted: both earlier versions are there, unchanged.
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert {v["VersionId"] for v in versions} == {old, cur, result.new_version_id}
    assert s3.get_object(Bucket=bucket, Key="doc.txt", VersionId=old)["Body"].read() == b"old content"
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="doc.txt", VersionId=old)
    assert not wire.of("DeleteObject") and not wire.of("DeleteObjects")


@pytest.mark.strict_s3
def test_a_write_between_inspection_and_copy_is_never_clobbered(backend: Any, wire: Any) -> None:
    s3 = client(backend)
    writer = backend.client("s3")
    bucket = backend.bucket("race")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="hot.txt", Body=b"inspected")
    if backend.strict:
        s3.delete_bucket_encryption(Bucket=bucket)  # LocalStack defaults to SSE-S3, like S3
        s3.put_object(Bucket=bucket, Key="hot.txt", Body=b"inspected")
    inspected = s3.head_object(Bucket=bucket, Key="hot.txt")["ETag"]
    policy = Policy.from_dict({"default": {"algorithm": "aws:kms"}})

    def overwrite(**kwargs: Any) -> None:  # the concurrent writer, right before the copy
        writer.put_object(Bucket=bucket, Key="hot.txt", Body=b"newer write")

    s3.meta.events.register("before-call.s3.CopyObject", overwrite)
    wire.attach(s3)
    _, results = scan_and_fix(backend, s3, policy, bucket, apply=True)
    assert wire.one("CopyObject").headers["x-amz-copy-source-if-match"] == inspected
    (result,) = results
    if backend.strict:
        assert result.status == "skipped" and "changed since the scan" in result.reason
        assert writer.get_object(Bucket=bucket, Key="hot.txt")["Body"].read() == b"newer write"
    else:
        assert result.status == "fixed"  # moto ignores CopySourceIfMatch


def test_dry_run_sends_no_write(backend: Any, wire: Any) -> None:
    s3 = client(backend)
    bucket = backend.bucket("dry")
    s3.create_bucket(Bucket=bucket)
    for k in ("a", "b"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    wire.attach(s3)
    _, results = scan_and_fix(backend, s3, Policy(), bucket)
    assert {r.status for r in results} == {"planned"}
    assert {s.operation for s in wire.sent} <= {"ListObjectsV2", "HeadObject", "GetBucketEncryption"}


def test_what_must_never_be_rewritten_is_left_alone_and_reported(backend: Any, kms_keys: Keys, faults: Faults, wire: Any) -> None:
    s3 = client(backend)
    bucket = backend.bucket("leave")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="dsse.txt", Body=b"x", ServerSideEncryption="aws:kms:dsse", SSEKMSKeyId=kms_keys.a)
    s3.put_object(Bucket=bucket, Key="fsx.bin", Body=b"x", ServerSideEncryption="aws:fsx")
    s3.put_object(Bucket=bucket, Key="secret.bin", Body=b"x")
    s3.put_object(Bucket=bucket, Key="cold.bin", Body=b"x", StorageClass="DEEP_ARCHIVE")
    s3.put_object(Bucket=bucket, Key="ok.txt", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=kms_keys.a)
    faults.when(lambda r: r.method == "HEAD" and "secret.bin" in r.url, 400)
    faults.attach(s3)
    wire.attach(s3)
    _, results = scan_and_fix(backend, s3, kms_a_policy(backend, kms_keys), bucket, apply=True)
    by_key = {r.key: r for r in results}
    assert "ok.txt" not in by_key  # compliant: not a finding, not touched
    assert by_key["dsse.txt"].status == "skipped"  # moto does not report the DSSE key
    assert by_key["fsx.bin"].status == "skipped" and "aws:fsx" in by_key["fsx.bin"].reason
    assert by_key["secret.bin"].status == "skipped" and "SSE-C" in by_key["secret.bin"].reason
    assert by_key["cold.bin"].status == "skipped" and "restore it first" in by_key["cold.bin"].reason
    assert not wire.of("CopyObject") and not wire.of("RestoreObject")


def test_restore_is_requested_only_when_asked(backend: Any, wire: Any) -> None:
    s3 = client(backend)
    bucket = backend.bucket("glacier")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="cold.bin", Body=b"x", StorageClass="GLACIER")
    wire.attach(s3)
    _, (result,) = scan_and_fix(backend, s3, Policy(), bucket, apply=True, restore=True)
    assert result.status == "skipped" and result.action == "restore" and "restore requested" in result.reason
    assert len(wire.of("RestoreObject")) == 1 and not wire.of("CopyObject")


def test_old_versions_are_reported_and_deleted_only_when_asked_and_never_under_object_lock(backend: Any, wire: Any) -> None:
    s3 = client(backend)
    for locked in (False, True):
        bucket = backend.bucket("locked" if locked else "versions")
        s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=locked)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        old = s3.put_object(Bucket=bucket, Key="k", Body=b"old")["VersionId"]
        s3.put_object(Bucket=bucket, Key="k", Body=b"new", ServerSideEncryption="AES256")
        classifier = make_classifier(s3, Policy(), kms_client=backend.client("kms"))
        records = list(Scanner(s3, classifier=classifier, all_versions=True, workers=2, max_workers=2).scan([f"s3://{bucket}"]))
        (kept,) = Fixer(s3, classifier, apply=True).fix(records)
        assert kept.status == "skipped" and "--delete-old-versions" in kept.reason
        wire.clear()
        wire.attach(s3)
        (result,) = Fixer(s3, classifier, apply=True, delete_old_versions=True).fix(records)
        if locked:
            assert result.status == "skipped" and "object lock" in result.reason
            assert not wire.of("DeleteObject")
        else:
            assert result.status == "fixed" and result.action == "delete-version"
            assert wire.one("DeleteObject").url.endswith(f"versionId={old}")
        assert not wire.of("CopyObject")  # an old version is never copied over the current one


def test_large_objects_use_multipart_copy_carrying_every_header_and_tags(backend: Any, wire: Any) -> None:
    s3 = client(backend)
    bucket = backend.bucket("large")
    s3.create_bucket(Bucket=bucket)
    body = bytes(range(256)) * (11 * MiB // 256)
    s3.put_object(
        Bucket=bucket,
        Key="big file.bin",
        Body=body,
        ContentType="application/x-thing",
        CacheControl="no-cache",
        ContentDisposition="inline",
        ContentEncoding="identity",
        ContentLanguage="fr",
        Expires="2099-01-01T00:00:00Z",
        WebsiteRedirectLocation="/elsewhere",
        Metadata={"k": "v"},
        Tagging="t=1",
        StorageClass="STANDARD_IA",
    )
    etag = s3.head_object(Bucket=bucket, Key="big file.bin")["ETag"]
    wire.attach(s3)
    _, (result,) = scan_and_fix(backend, s3, Policy(), bucket, apply=True, multipart_threshold=5 * MiB, part_size=5 * MiB)
    assert result.status == "fixed" and result.action == "multipart-copy", result
    create = wire.one("CreateMultipartUpload").headers
    assert create["content-type"] == "application/x-thing"
    assert create["cache-control"] == "no-cache"
    assert create["content-disposition"] == "inline"
    assert create["content-encoding"] == "identity"
    assert create["content-language"] == "fr"
    assert "2099" in create["expires"]
    assert create["x-amz-website-redirect-location"] == "/elsewhere"
    assert create["x-amz-meta-k"] == "v"
    assert create["x-amz-tagging"] == "t=1"
    assert create["x-amz-storage-class"] == "STANDARD_IA"
    assert create["x-amz-server-side-encryption"] == "AES256"
    parts = wire.of("UploadPartCopy")
    assert len(parts) == 3 and all(p.headers["x-amz-copy-source-if-match"] == etag for p in parts)
    head = s3.head_object(Bucket=bucket, Key="big file.bin")
    assert head["ServerSideEncryption"] == "AES256" and head["ContentType"] == "application/x-thing"
    assert head["Metadata"] == {"k": "v"} and head["StorageClass"] == "STANDARD_IA"
    assert s3.get_object_tagging(Bucket=bucket, Key="big file.bin")["TagSet"] == [{"Key": "t", "Value": "1"}]
    assert s3.get_object(Bucket=bucket, Key="big file.bin")["Body"].read() == body


def test_a_multipart_copy_that_fails_is_aborted(backend: Any, faults: Faults, wire: Any) -> None:
    s3 = client(backend)
    bucket = backend.bucket("abort")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="big", Body=b"\0" * (6 * MiB))
    faults.when(lambda r: r.method == "PUT" and "partNumber=2" in r.url, 403)
    faults.attach(s3)
    wire.attach(s3)
    _, (result,) = scan_and_fix(backend, s3, Policy(), bucket, apply=True, multipart_threshold=5 * MiB, part_size=5 * MiB)
    assert result.status == "failed"
    assert len(wire.of("AbortMultipartUpload")) == 1
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="big")


def test_a_failing_key_does_not_stop_the_rest_and_counts_add_up(backend: Any, faults: Faults) -> None:
    s3 = client(backend)
    bucket = backend.bucket("mixed")
    s3.create_bucket(Bucket=bucket)
    keys = [f"k{i:02d}" for i in range(12)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    faults.when(lambda r: r.method == "PUT" and r.url.endswith("/k05"), 500, b"<Error><Code>InternalError</Code></Error>")
    faults.attach(s3)
    _, results = scan_and_fix(backend, s3, Policy(), bucket, apply=True)
    statuses = {r.key: r.status for r in results}
    assert sorted(statuses) == keys
    assert statuses.pop("k05") == "failed"
    assert set(statuses.values()) == {"fixed"}


def test_the_results_log_resumes_without_repeating_work(backend: Any, tmp_path: Any, wire: Any) -> None:
    s3 = client(backend)
    bucket = backend.bucket("resume")
    s3.create_bucket(Bucket=bucket)
    for k in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    log = tmp_path / "results.jsonl"
    classifier = make_classifier(s3, Policy(), kms_client=backend.client("kms"))
    records = list(Scanner(s3, classifier=classifier, workers=2, max_workers=2).scan([f"s3://{bucket}"]))
    first = list(Fixer(s3, classifier, apply=True, results_file=log).fix(records))
    assert {r.status for r in first} == {"fixed"} and len(log.read_text().splitlines()) == 3
    wire.attach(s3)
    again = list(Fixer(s3, classifier, apply=True, results_file=log).fix(records))
    assert len(again) == 3 and all(r.reason.startswith("(results log)") for r in again)
    assert not wire.of("CopyObject")


def test_acls_are_not_read_when_the_bucket_enforces_bucket_owner(backend: Any, wire: Any) -> None:
    s3 = client(backend)
    bucket = backend.bucket("owner")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    wire.attach(s3)
    _, (result,) = scan_and_fix(backend, s3, Policy(), bucket, apply=True)
    assert result.status == "fixed"
    assert not wire.of("GetObjectAcl") and not wire.of("PutObjectAcl")


def test_the_alias_in_the_policy_is_sent_as_the_key_arn(backend: Any, kms_keys: Keys, wire: Any) -> None:
    s3 = client(backend)
    bucket = backend.bucket("alias")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=kms_keys.b)
    wire.attach(s3)
    policy = Policy.from_dict({"default": {"algorithm": "aws:kms", "kms_key_id": alias_of(backend, kms_keys.a)}})
    _, (result,) = scan_and_fix(backend, s3, policy, bucket, apply=True)
    assert result.status == "fixed"
    assert wire.one("CopyObject").headers["x-amz-server-side-encryption-aws-kms-key-id"] == kms_keys.a

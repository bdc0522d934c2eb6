"""Inventory mode (no HEADs, checksums, URL-decoded keys) and the Batch Operations hand-off."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import urllib.parse
from typing import Any

import pytest
from botocore.stub import Stubber
from scan_helpers import Keys

from sse_guard.errors import ConfigurationError
from sse_guard.policy import Policy
from sse_guard.scan import (
    InventoryError,
    Scanner,
    ScanRecord,
    make_classifier,
    make_s3_client,
    manifest_csv,
    plan_batch,
    read_inventory,
    submit_batch,
    submit_generated_batch,
)

SCHEMA = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, StorageClass, ETag, EncryptionStatus, BucketKeyStatus"


def gz_csv(rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL).writerows(rows)
    return gzip.compress(text.getvalue().encode())


def publish(s3: Any, dest: str, source: str, files: list[bytes], *, fmt: str = "CSV", corrupt: str = "") -> str:
    base = f"inv/{source}/cfg/2026-01-01T00-00Z"
    entries = []
    for i, data in enumerate(files):
        key = f"inv/{source}/cfg/data/{i}.csv.gz"
        s3.put_object(Bucket=dest, Key=key, Body=data)
        md5 = hashlib.md5(data).hexdigest()
        entries.append({"key": key, "size": len(data), "MD5checksum": "0" * 32 if corrupt == "data" else md5})
    manifest = json.dumps(
        {"sourceBucket": source, "destinationBucket": f"arn:aws:s3:::{dest}", "fileFormat": fmt, "fileSchema": SCHEMA, "files": entries}
    ).encode()
    s3.put_object(Bucket=dest, Key=f"{base}/manifest.json", Body=manifest)
    checksum = hashlib.md5(manifest + (b"x" if corrupt == "manifest" else b"")).hexdigest()
    s3.put_object(Bucket=dest, Key=f"{base}/manifest.checksum", Body=checksum.encode())
    return f"s3://{dest}/{base}/manifest.json"


def q(key: str) -> str:
    return urllib.parse.quote_plus(key, safe="/")


def setup(backend: Any) -> tuple[Any, str, str]:
    s3 = make_s3_client(backend.session(), max_pool_connections=8)
    dest, source = backend.bucket("inventory"), backend.bucket("source")
    s3.create_bucket(Bucket=dest)
    s3.create_bucket(Bucket=source)
    return s3, dest, source


def test_inventory_rows_are_classified_without_a_single_head(backend: Any, wire: Any) -> None:
    s3, dest, source = setup(backend)
    rows = [
        [source, q("plain one.txt"), "", "true", "false", "10", "STANDARD", "e1", "NOT-SSE", "DISABLED"],
        [source, q("ünï/100% sure+.txt"), "", "true", "false", "20", "STANDARD_IA", "e2", "SSE-S3", "DISABLED"],
        [source, "kms.txt", "", "true", "false", "30", "STANDARD", "e3", "SSE-KMS", "ENABLED"],
        [source, "gone.txt", "", "true", "true", "", "", "", "", ""],  # a delete marker
    ]
    url = publish(s3, dest, source, [gz_csv(rows[:2]), gz_csv(rows[2:])])
    wire.attach(s3)
    classifier = make_classifier(s3, Policy(), kms_client=backend.client("kms"))
    records = {r.key: r for r in read_inventory(s3, url, classifier)}
    assert set(records) == {"plain one.txt", "ünï/100% sure+.txt", "kms.txt"}
    assert records["plain one.txt"].compliant is False and records["plain one.txt"].encryption == "NOT-SSE"
    assert records["ünï/100% sure+.txt"].compliant is True and records["ünï/100% sure+.txt"].size == 20
    assert records["kms.txt"].bucket_key is True
    assert not wire.of("HeadObject")


def test_a_manifest_that_fails_its_checksum_is_refused(backend: Any) -> None:
    s3, dest, source = setup(backend)
    classifier = make_classifier(s3, Policy(), kms_client=backend.client("kms"))
    bad = publish(s3, dest, source, [gz_csv([])], corrupt="manifest")
    with pytest.raises(InventoryError, match=r"manifest\.checksum"):
        list(read_inventory(s3, bad, classifier))


def test_a_data_file_that_fails_its_md5_is_refused(backend: Any) -> None:
    s3, dest, source = setup(backend)
    classifier = make_classifier(s3, Policy(), kms_client=backend.client("kms"))
    bad = publish(s3, dest, source, [gz_csv([[source, "k", "", "true", "false", "1", "STANDARD", "e", "NOT-SSE", ""]])], corrupt="data")
    with pytest.raises(InventoryError, match="MD5checksum"):
        list(read_inventory(s3, bad, classifier))


def test_verify_heads_only_the_non_compliant_rows(backend: Any, wire: Any) -> None:
    s3, dest, source = setup(backend)
    s3.put_object(Bucket=source, Key="stale.txt", Body=b"x", ServerSideEncryption="AES256")  # fixed since the report
    s3.put_object(Bucket=source, Key="still plain.txt", Body=b"x")
    rows = [
        [source, "stale.txt", "", "true", "false", "1", "STANDARD", "e", "NOT-SSE", ""],
        [source, q("still plain.txt"), "", "true", "false", "1", "STANDARD", "e", "NOT-SSE", ""],
        [source, "fine.txt", "", "true", "false", "1", "STANDARD", "e", "SSE-S3", ""],
    ]
    url = publish(s3, dest, source, [gz_csv(rows)])
    classifier = make_classifier(s3, Policy(), kms_client=backend.client("kms"))
    scanner = Scanner(s3, classifier=classifier, workers=2, max_workers=2)
    wire.attach(s3)
    records = {r.key: r for r in read_inventory(s3, url, classifier, verify=scanner.recheck, verify_workers=2)}
    assert records["stale.txt"].compliant is True
    assert records["still plain.txt"].compliant is False
    assert records["fine.txt"].compliant is True
    heads = sorted(urllib.parse.unquote(h.url.rsplit("/", 1)[1]) for h in wire.of("HeadObject"))
    assert heads == ["stale.txt", "still plain.txt"]


def test_parquet_inventory_without_pyarrow_says_how_to_get_it(backend: Any) -> None:
    pytest.importorskip("sys")
    try:
        import pyarrow  # noqa: F401

        pytest.skip("pyarrow is installed")
    except ImportError:
        pass
    s3, dest, source = setup(backend)
    url = publish(s3, dest, source, [b"PAR1"], fmt="Parquet")
    classifier = make_classifier(s3, Policy(), kms_client=backend.client("kms"))
    with pytest.raises(ConfigurationError, match=r"sse-guard\[parquet\]"):
        list(read_inventory(s3, url, classifier))


def finding(bucket: str, key: str, **kw: Any) -> ScanRecord:
    base: dict[str, Any] = dict(
        bucket=bucket, key=key, version_id=None, size=10, storage_class="STANDARD", encryption="NOT-SSE",
        kms_key_id=None, bucket_key=None, client_side_format=None, object_lock=None, compliant=False, reason="r",
    )
    base.update(kw)
    return ScanRecord(**base)


def test_manifest_csv_url_encodes_keys_and_refuses_mixed_version_rows() -> None:
    body = manifest_csv([("b", "a dir/ü%?versionId=1,x", None), ("b", "k", None)]).decode()
    assert body == "b,a%20dir%2F%C3%BC%25%3FversionId%3D1%2Cx\nb,k\n"
    assert manifest_csv([("b", "k", "v1")]) == b"b,k,v1\n"
    with pytest.raises(ConfigurationError):
        manifest_csv([("b", "k", "v1"), ("b", "k2", None)])


def test_batch_job_request_is_valid_for_the_model_and_what_stays_local_is_listed(backend: Any, kms_keys: Keys) -> None:
    s3, manifests, source = setup(backend)
    policy = Policy.from_dict({"default": {"algorithm": "aws:kms", "kms_key_id": kms_keys.a, "bucket_key": True}})
    classifier = make_classifier(s3, policy, kms_client=backend.client("kms"))
    records = [
        finding(source, "a.txt"),
        finding(source, "b c.txt", storage_class="STANDARD_IA"),
        finding(source, "huge.bin", size=6 * 1024**3),
        finding(source, "secret", encryption="SSE-C"),
        finding(source, "cold", storage_class="GLACIER"),
        finding(source, "old", version_id="v1", is_latest=False),
        finding(source, "ok", compliant=True),
    ]
    plan = plan_batch(records, classifier)
    assert plan.batch_count == 2 and len(plan.groups) == 2  # one job per storage class
    assert sorted(r.key for r, _ in plan.local) == ["cold", "huge.bin", "old", "secret"]

    control = backend.client("s3control")
    stub = Stubber(control)  # moto has no Batch Operations: the model validates the request
    for _ in plan.groups:
        stub.add_response("create_job", {"JobId": "job-" + "1" * 10})
    with stub:
        jobs = submit_batch(
            s3, control, plan, account_id="123456789012", role_arn="arn:aws:iam::123456789012:role/batch",
            manifest_url=f"s3://{manifests}/manifests/", report_url=f"s3://{manifests}/reports/",
        )
    stub.assert_no_pending_responses()
    assert len(jobs) == 2
    for job in jobs:
        body = s3.get_object(Bucket=manifests, Key=job["manifest"].split("/", 3)[3])["Body"].read().decode()
        assert all(len(line.split(",")) == 2 for line in body.splitlines())
        assert job["etag"] == s3.head_object(Bucket=manifests, Key=job["manifest"].split("/", 3)[3])["ETag"]
    # Idempotent: the same plan gives the same tokens.
    stub2 = Stubber(control)
    for _ in jobs:
        stub2.add_response("create_job", {"JobId": "job-" + "2" * 10}, None)
    with stub2:
        again = submit_batch(
            s3, control, plan, account_id="123456789012", role_arn="arn:aws:iam::123456789012:role/batch",
            manifest_url=f"s3://{manifests}/manifests/", report_url=f"s3://{manifests}/reports/",
        )
    assert [j["token"] for j in again] == [j["token"] for j in jobs]


def test_the_sent_copy_operation_carries_the_new_encryption(backend: Any, kms_keys: Keys) -> None:
    control = backend.client("s3control")
    sent: list[dict[str, Any]] = []
    control.meta.events.register("provide-client-params.s3-control.CreateJob", lambda params, **kw: sent.append(dict(params)))
    stub = Stubber(control)
    stub.add_response("create_job", {"JobId": "job-" + "3" * 10})
    from sse_guard.settings import SSEKMS

    with stub:
        submit_generated_batch(
            control, bucket="src-bucket", target=SSEKMS(kms_keys.a, bucket_key=True), account_id="123456789012",
            role_arn="arn:aws:iam::123456789012:role/batch", report_url="s3://reports-bucket/r/",
        )
    (params,) = sent
    op = params["Operation"]["S3PutObjectCopy"]
    assert op["NewObjectMetadata"] == {"SSEAlgorithm": "KMS"}
    assert op["SSEAwsKmsKeyId"] == kms_keys.a and op["BucketKeyEnabled"] is True
    assert params["ManifestGenerator"]["S3JobManifestGenerator"]["Filter"]["MatchAnyObjectEncryption"] == [{"NOTSSE": {}}]
    assert len(params["ClientRequestToken"]) <= 64

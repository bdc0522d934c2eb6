"""Hand the bulk of a fix to S3 Batch Operations (``S3PutObjectCopy``).

What Batch Operations cannot do stays with the local fixer, and the plan says why:
objects over 5 GB, SSE-C objects, archived objects (no restore), non-current versions
(copying one in place would make it current), DSSE-KMS or client-side targets, objects
encrypted otherwise (aws:fsx, aws:backup). And it cannot copy conditionally: a write
between the scan and the job is copied as it is then (the manifest names no version
ids by default, so an older version is never copied over a newer one).

One job per (target encryption, storage class): a job sets one storage class for all
of its objects, and a copy would otherwise move every object to STANDARD.
"""

from __future__ import annotations

import hashlib
import io
import json
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError
from ..settings import SSEKMS, SSES3, ServerSide
from ._classify import Classifier
from ._fix import ARCHIVED, COPY_LIMIT
from ._records import ScanRecord
from ._scanner import parse_s3_url

__all__ = ["BATCH_LIMITS", "BatchGroup", "BatchPlan", "manifest_csv", "plan_batch", "submit_batch"]

BATCH_LIMITS = (
    "S3 Batch Operations cannot copy conditionally (no ETag check): an object rewritten "
    "between the scan and the job is copied as it is when the job runs",
    "objects over 5 GB, SSE-C objects, archived objects, non-current versions and "
    "DSSE-KMS targets stay with the local fixer (sse-guard fix --apply)",
    "a Batch Operations copy resets object ACLs to private unless the bucket enforces "
    "bucket-owner ownership, and does not carry object-lock retention",
)


@dataclass
class BatchGroup:
    target: ServerSide
    storage_class: str
    rows: list[tuple[str, str, str | None]] = field(default_factory=list)


@dataclass
class BatchPlan:
    groups: dict[tuple[Any, str], BatchGroup] = field(default_factory=dict)
    local: list[tuple[ScanRecord, str]] = field(default_factory=list)

    @property
    def batch_count(self) -> int:
        return sum(len(g.rows) for g in self.groups.values())


def _local_reason(record: ScanRecord, target: object) -> str | None:
    if record.encryption == "SSE-C":
        return "SSE-C object: Batch Operations cannot copy it"
    if record.encryption in ("OTHER", "DSSE-KMS", "CLIENT-SIDE"):
        return f"{record.encryption} object: left to the local fixer's rules"
    if record.size is not None and record.size > COPY_LIMIT:
        return "over 5 GB: needs a multipart copy"
    if (record.storage_class or "STANDARD") in ARCHIVED:
        return f"archived in {record.storage_class}: needs a restore first"
    if record.is_latest is False:
        return "non-current version: never copied over the current one"
    if not isinstance(target, (SSES3, SSEKMS)):
        return f"target {getattr(target, 'label', target)}: Batch Operations sets only SSE-S3 or SSE-KMS"
    return None


def plan_batch(records: Iterable[ScanRecord], classifier: Classifier, *, with_versions: bool = False) -> BatchPlan:
    """Split findings into Batch Operations groups and what stays local (with why)."""
    plan = BatchPlan()
    for record in records:
        if not record.is_finding:
            continue
        target = classifier.required(record.bucket, record.key)
        reason = _local_reason(record, target)
        if reason is not None:
            plan.local.append((record, reason))
            continue
        assert isinstance(target, (SSES3, SSEKMS))
        storage = record.storage_class or "STANDARD"
        group = plan.groups.setdefault((target, storage), BatchGroup(target, storage))
        group.rows.append((record.bucket, record.key, record.version_id if with_versions else None))
    return plan


def manifest_csv(rows: Iterable[tuple[str, str, str | None]]) -> bytes:
    """The documented manifest format: ``bucket,url-encoded-key[,version-id]``.

    Either every row has a version id or none does.
    """
    out = io.StringIO()
    with_versions: bool | None = None
    for bucket, key, version in rows:
        has = version is not None
        if with_versions is None:
            with_versions = has
        elif has != with_versions:
            raise ConfigurationError("a Batch Operations manifest needs a version id on every row or on none")
        line = f"{bucket},{urllib.parse.quote(key, safe='')}"
        out.write(f"{line},{version}\n" if has else f"{line}\n")
    return out.getvalue().encode()


def copy_operation(group: BatchGroup, bucket: str) -> dict[str, Any]:
    op: dict[str, Any] = {
        "TargetResource": f"arn:aws:s3:::{bucket}",
        "MetadataDirective": "COPY",
        "StorageClass": group.storage_class,
    }
    if isinstance(group.target, SSEKMS):
        op["NewObjectMetadata"] = {"SSEAlgorithm": "KMS"}
        if group.target.key_id:
            op["SSEAwsKmsKeyId"] = group.target.key_id
        if group.target.bucket_key is not None:
            op["BucketKeyEnabled"] = group.target.bucket_key
    else:
        op["NewObjectMetadata"] = {"SSEAlgorithm": "AES256"}
    return {"S3PutObjectCopy": op}


def _token(*parts: Any) -> str:
    """Deterministic: the same manifest and job submitted twice is one job."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:64]


def submit_batch(
    s3: Any,
    s3control: Any,
    plan: BatchPlan,
    *,
    account_id: str,
    role_arn: str,
    manifest_url: str,
    report_url: str,
    priority: int = 10,
    confirmation_required: bool = True,
) -> list[dict[str, Any]]:
    """Upload one manifest per group under ``manifest_url`` and create one job each.

    Returns, per job: its id, the manifest location and ETag, and the request token.
    """
    where = parse_s3_url(manifest_url)
    report = parse_s3_url(report_url)
    jobs = []
    for number, group in enumerate(plan.groups.values(), start=1):
        buckets = {b for b, _, _ in group.rows}
        for bucket in sorted(buckets):
            rows = [r for r in group.rows if r[0] == bucket]
            body = manifest_csv(rows)
            key = f"{where.prefix.rstrip('/')}/sse-guard-{number}-{bucket}-{hashlib.sha256(body).hexdigest()[:16]}.csv".lstrip("/")
            s3.put_object(Bucket=where.bucket, Key=key, Body=body, ContentType="text/csv")
            etag = s3.head_object(Bucket=where.bucket, Key=key)["ETag"]
            fields = ["Bucket", "Key"] + (["VersionId"] if rows[0][2] is not None else [])
            operation = copy_operation(group, bucket)
            token = _token(account_id, role_arn, where.bucket, key, etag, operation)
            response = s3control.create_job(
                AccountId=account_id,
                ConfirmationRequired=confirmation_required,
                Operation=operation,
                Report=_completion_report(report),
                ClientRequestToken=token,
                Manifest={
                    "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": fields},
                    "Location": {"ObjectArn": f"arn:aws:s3:::{where.bucket}/{key}", "ETag": etag.strip('"')},
                },
                Description=f"sse-guard re-encrypt {len(rows)} objects in {bucket} as {group.target.describe()}"[:256],
                Priority=priority,
                RoleArn=role_arn,
            )
            jobs.append({"JobId": response["JobId"], "manifest": f"s3://{where.bucket}/{key}", "etag": etag, "token": token, "objects": len(rows)})
    return jobs


def _completion_report(report: Any) -> dict[str, Any]:
    """Every task's outcome, as CSV, under the prefix the user named."""
    return {
        "Bucket": f"arn:aws:s3:::{report.bucket}",
        "Format": "Report_CSV_20180820",
        "Enabled": True,
        "Prefix": report.prefix.rstrip("/") or "sse-guard-reports",
        "ReportScope": "AllTasks",
    }


def submit_generated_batch(
    s3control: Any,
    *,
    bucket: str,
    target: ServerSide,
    account_id: str,
    role_arn: str,
    report_url: str,
    storage_class: str = "STANDARD",
    priority: int = 10,
    confirmation_required: bool = True,
) -> dict[str, Any]:
    """A job whose manifest S3 generates itself: every unencrypted object of ``bucket``."""
    if not isinstance(target, (SSES3, SSEKMS)):
        raise ConfigurationError(f"Batch Operations can set only SSE-S3 or SSE-KMS, not {target.label}")
    report = parse_s3_url(report_url)
    # One storage class per job: the generated manifest is filtered to STANDARD objects
    # so that none is moved to another class; run once per class with ``storage_class``.
    operation = copy_operation(BatchGroup(target, storage_class), bucket)
    token = _token(account_id, role_arn, bucket, "generated", storage_class, operation)
    response: dict[str, Any] = s3control.create_job(
        AccountId=account_id,
        ConfirmationRequired=confirmation_required,
        Operation=operation,
        Report=_completion_report(report),
        ClientRequestToken=token,
        ManifestGenerator={
            "S3JobManifestGenerator": {
                "SourceBucket": f"arn:aws:s3:::{bucket}",
                "EnableManifestOutput": False,
                "Filter": {
                    "MatchAnyObjectEncryption": [{"NOTSSE": {}}],
                    "MatchAnyStorageClass": [storage_class],
                },
            }
        },
        Description=f"sse-guard re-encrypt unencrypted objects in {bucket} as {target.describe()}"[:256],
        Priority=priority,
        RoleArn=role_arn,
    )
    return {"JobId": response["JobId"], "token": token}

"""Bucket-level audit: default encryption against the policy, bucket key, SSE-C block,
and whether the bucket policy denies unencrypted or wrong-key writes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import BucketEncryptionLookupError
from ..policy import Given, satisfies
from ..settings import DSSEKMS, SSEC, SSEKMS, SSES3, ClientSide, Encryption
from ._classify import Classifier
from ._concurrency import error_text

__all__ = ["BucketReport", "audit_bucket", "recommended_bucket_policy"]

_SSE_KEY = "s3:x-amz-server-side-encryption"
_KMS_KEY = "s3:x-amz-server-side-encryption-aws-kms-key-id"
_SSEC_KEY = "s3:x-amz-server-side-encryption-customer-algorithm"


@dataclass(frozen=True)
class BucketReport:
    bucket: str
    required: str
    default_encryption: str | None
    kms_key_id: str | None
    bucket_key: bool | None
    default_meets_policy: bool | None
    sse_c_blocked: bool | None
    denies_unencrypted: bool | None
    denies_wrong_key: bool | None
    reason: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.default_meets_policy)


def _deny_conditions(policy_doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    statements = policy_doc.get("Statement", [])
    for st in statements if isinstance(statements, list) else [statements]:
        if st.get("Effect") != "Deny":
            continue
        actions = st.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if not any(a.lower() in ("s3:putobject", "s3:*", "*") for a in actions):
            continue
        out.append({op: {k.lower(): v for k, v in cond.items()} for op, cond in st.get("Condition", {}).items()})
    return out


def analyse_bucket_policy(doc: dict[str, Any], required: Encryption) -> tuple[bool, bool]:
    """(denies unencrypted PutObject, denies PutObject under another KMS key)."""
    unencrypted = wrong_key = False
    key = required.key_id if isinstance(required, (SSEKMS, DSSEKMS)) else None
    for cond in _deny_conditions(doc):
        for op, pairs in cond.items():
            opl = op.lower()
            if _SSE_KEY in pairs and (opl.startswith("stringnotequals") or (opl == "null" and str(pairs[_SSE_KEY]).lower() == "true")):
                unencrypted = True
            if _KMS_KEY in pairs and opl.startswith("stringnotequals"):
                values = pairs[_KMS_KEY]
                values = [values] if isinstance(values, str) else values
                wrong_key = wrong_key or key is None or key in values
    return unencrypted, wrong_key


def audit_bucket(client: Any, classifier: Classifier, bucket: str) -> BucketReport:
    """One bucket: the bucket-wide rule (prefix "") against what the bucket enforces."""
    try:
        default = classifier.bucket_default(bucket)
        required = classifier.required(bucket, "")
    except BucketEncryptionLookupError as e:
        return BucketReport(bucket, "?", None, None, None, None, None, None, None, str(e), error="BucketEncryptionLookupError")
    enc = default.encryption
    kms = enc.key_id if isinstance(enc, (SSEKMS, DSSEKMS)) else None
    if isinstance(required, ClientSide):
        meets: bool | None = None
        reason = "client-side encryption is required: no bucket setting can enforce it"
    elif enc is None:
        meets, reason = False, f"no default encryption; {required.describe()} is required"
    else:
        given = Given(algorithm={"SSE-S3": "AES256", "SSE-KMS": "aws:kms", "DSSE-KMS": "aws:kms:dsse"}[enc.label], kms_key_id=kms)
        shortfall = satisfies(required, given, same_key=classifier._same_key)
        meets = shortfall is None
        reason = (shortfall or f"default {enc.describe()} meets {required.describe()}").replace("the request asks for", "the default is")
    denies_unencrypted: bool | None = None
    denies_wrong_key: bool | None = None
    try:
        doc = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
        denies_unencrypted, denies_wrong_key = analyse_bucket_policy(doc, required)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "NoSuchBucketPolicy":
            denies_unencrypted = denies_wrong_key = False
    except (BotoCoreError, ValueError):
        pass
    return BucketReport(
        bucket=bucket,
        required=required.describe(),
        default_encryption=enc.label if enc is not None else None,
        kms_key_id=kms,
        bucket_key=enc.bucket_key if isinstance(enc, SSEKMS) else None,
        default_meets_policy=meets,
        sse_c_blocked=default.blocks_sse_c,
        denies_unencrypted=denies_unencrypted,
        denies_wrong_key=denies_wrong_key if isinstance(required, (SSEKMS, DSSEKMS)) else None,
        reason=reason,
    )


def list_bucket_names(client: Any) -> list[str]:
    try:
        return [b["Name"] for b in client.list_buckets().get("Buckets", [])]
    except (ClientError, BotoCoreError) as e:
        raise BucketEncryptionLookupError(f"cannot list buckets: {error_text(e)}") from e


def recommended_bucket_policy(bucket: str, required: Encryption) -> dict[str, Any]:
    """A bucket policy that refuses writes without the required encryption.

    Note that it refuses writes that rely on the bucket default (no header): the guard
    states the encryption explicitly on every write, so guarded clients pass.
    """
    arn = f"arn:aws:s3:::{bucket}/*"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{bucket}", arn],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]
    if isinstance(required, (SSES3, SSEKMS, DSSEKMS)):
        allowed = {SSES3: ["AES256", "aws:kms", "aws:kms:dsse"], SSEKMS: ["aws:kms", "aws:kms:dsse"], DSSEKMS: ["aws:kms:dsse"]}[type(required)]
        statements.append(
            {
                "Sid": "DenyWritesWithoutRequiredEncryption",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": arn,
                "Condition": {"StringNotEquals": {_SSE_KEY: allowed}},
            }
        )
        if isinstance(required, (SSEKMS, DSSEKMS)) and required.key_id:
            statements.append(
                {
                    "Sid": "DenyWritesUnderAnotherKmsKey",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:PutObject",
                    "Resource": arn,
                    "Condition": {"StringNotEqualsIfExists": {_KMS_KEY: required.key_id}},
                }
            )
    if not isinstance(required, SSEC):
        statements.append(
            {
                "Sid": "DenySSEC",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": arn,
                "Condition": {"Null": {_SSEC_KEY: "false"}},
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}

"""Classify what an object carries and judge it against the policy.

``observe_head`` and ``client_side_format`` are pure functions of a HeadObject response;
``judge`` is a pure function of (required, observed). ``Classifier`` glues them to the
policy, the bucket defaults (one GetBucketEncryption per bucket) and KMS alias resolution.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..bucket_defaults import fetch_bucket_default
from ..errors import BucketEncryptionLookupError, ConfigurationError
from ..policy import BucketDefault, Given, Policy, is_kms_arn, resolve_required, satisfies
from ..settings import DSSEKMS, SSEC, SSEKMS, SSES3, ClientSide, Encryption

__all__ = ["Classifier", "Observed", "client_side_format", "judge", "observe_head"]

_SSE_CLASS = {"AES256": "SSE-S3", "aws:kms": "SSE-KMS", "aws:kms:dsse": "DSSE-KMS"}


@dataclass(frozen=True)
class Observed:
    """The encryption one object carries. ``algorithm`` is the raw ServerSideEncryption."""

    encryption: str
    algorithm: str | None = None
    kms_key_id: str | None = None
    bucket_key: bool | None = None
    client_side_format: str | None = None
    sse_c_key_md5: str | None = None

    def server_side(self) -> str:
        if self.encryption == "SSE-C" or self.sse_c_key_md5:
            return "SSE-C"
        if self.algorithm is None:
            return "no server-side encryption"
        if self.kms_key_id:
            return f"{_SSE_CLASS.get(self.algorithm, self.algorithm)} (key {self.kms_key_id})"
        return _SSE_CLASS.get(self.algorithm, self.algorithm)


def client_side_format(metadata: Mapping[str, str] | None) -> str | None:
    """The S3 Encryption Client format named by an object's user metadata, if any.

    Keys as boto3 returns them (lower case, without ``x-amz-meta-``).
    """
    if not metadata:
        return None
    meta = {k.lower(): v for k, v in metadata.items()}
    if "x-amz-c" in meta:
        if "x-amz-3" in meta:
            return "v3"
        if "x-amz-d" in meta and "x-amz-i" in meta:
            return "v3+instruction-file"
        return "v3"
    if "x-amz-key-v2" in meta:
        if meta.get("x-amz-cek-alg", "").upper().startswith("AES/CBC"):
            return "v2-legacy-cbc"
        return "v2"
    if "x-amz-key" in meta:
        return "v1"
    if "x-amz-crypto-instr-file" in meta:
        return "v2+instruction-file"
    return None


def observe_head(head: Mapping[str, Any]) -> Observed:
    """What a HeadObject response says of the object's encryption."""
    csf = client_side_format(head.get("Metadata"))
    alg = head.get("ServerSideEncryption")
    md5 = head.get("SSECustomerKeyMD5")
    if head.get("SSECustomerAlgorithm") or md5:
        cls = "SSE-C"
    elif csf is not None:
        cls = "CLIENT-SIDE"
    elif alg is None:
        cls = "NOT-SSE"
    else:
        cls = _SSE_CLASS.get(alg, "OTHER")
    kms = head.get("SSEKMSKeyId") if alg in ("aws:kms", "aws:kms:dsse") else None
    bucket_key = head.get("BucketKeyEnabled")
    return Observed(
        encryption=cls,
        algorithm=alg,
        kms_key_id=kms,
        bucket_key=bool(bucket_key) if bucket_key is not None else (False if kms or alg == "aws:kms" else None),
        client_side_format=csf,
        sse_c_key_md5=md5,
    )


def _client_side_shortfall(required: ClientSide, obs: Observed) -> str | None:
    fmt = obs.client_side_format
    if fmt is None:
        return f"client-side encryption is required; the object has {obs.server_side()} and no S3 Encryption Client metadata"
    if fmt.startswith(("v1", "v2-legacy")):
        return f"client-side {fmt} is a legacy, unauthenticated format"
    if (
        fmt.startswith("v2")
        and required.format == "v3"
        and required.commitment_policy == "require-encrypt-require-decrypt"
    ):
        return "client-side v2 is not key-committing and the policy's readers require v3"
    return None


def judge(required: Encryption, obs: Observed, *, same_key: Callable[[str, str], bool]) -> str | None:
    """Why ``obs`` falls short of ``required``, or None when it meets it."""
    if isinstance(required, ClientSide):
        return _client_side_shortfall(required, obs)
    if obs.encryption == "SSE-C" and obs.sse_c_key_md5 is None:
        if isinstance(required, SSEC):
            return "SSE-C object that the policy's key does not open"
        return f"SSE-C object (cannot be inspected without its key); {required.describe()} is required"
    if (
        isinstance(required, (SSEKMS, DSSEKMS))
        and required.key_id
        and obs.algorithm in ("aws:kms", "aws:kms:dsse")
        and not obs.kms_key_id
    ):
        return f"{required.describe()} is required; S3 did not report the object's KMS key"
    given = Given(
        algorithm=obs.algorithm,
        kms_key_id=obs.kms_key_id,
        bucket_key=obs.bucket_key,
        sse_c_key_md5=obs.sse_c_key_md5,
    )
    reason = satisfies(required, given, same_key=same_key)
    if reason is not None:
        return reason.replace("the request asks for", "the object has")
    return None


class Classifier:
    """Judges objects against a policy: bucket defaults fetched once per bucket.

    ``policy`` must already have its KMS aliases resolved to ARNs (``Policy.with_kms_key_arns``).
    """

    def __init__(
        self,
        policy: Policy,
        *,
        s3_client: Any,
        same_key: Callable[[str, str], bool] = lambda a, b: a == b,
        resolve_key: Callable[[str], str] | None = None,
    ) -> None:
        self.policy = policy
        self._client = s3_client
        self._same_key = same_key
        self._resolve_key = resolve_key
        self._lock = threading.Lock()
        self._defaults: dict[str, BucketDefault | BucketEncryptionLookupError] = {}
        self._bucket_locks: dict[str, threading.Lock] = {}

    def bucket_default(self, bucket: str) -> BucketDefault:
        with self._lock:
            lock = self._bucket_locks.setdefault(bucket, threading.Lock())
        with lock:
            cached = self._defaults.get(bucket)
            if cached is None:
                try:
                    cached = fetch_bucket_default(self._client, bucket)
                except BucketEncryptionLookupError as e:
                    cached = e
                self._defaults[bucket] = cached
        if isinstance(cached, BucketEncryptionLookupError):
            raise cached
        return cached

    def required(self, bucket: str, key: str) -> Encryption:
        """What the policy requires of (bucket, key). Raises BucketEncryptionLookupError."""
        rule = self.policy.rule_for(bucket, key)
        if isinstance(rule, (SSES3, SSEKMS, DSSEKMS, SSEC, ClientSide)):
            return rule
        try:
            default = self.bucket_default(bucket)
        except BucketEncryptionLookupError:
            if self.policy.on_lookup_error == "fallback":
                return self.policy.fallback
            raise
        return resolve_required(self.policy, rule, default)

    def key_arn(self, key_id: str | None) -> str | None:
        if key_id is None or is_kms_arn(key_id) or self._resolve_key is None:
            return key_id
        try:
            return self._resolve_key(key_id)
        except ConfigurationError:  # an unresolvable id is reported as S3 gave it
            return key_id

    def judge(self, required: Encryption, obs: Observed) -> str | None:
        return judge(required, obs, same_key=self._same_key)

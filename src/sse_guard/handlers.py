"""botocore event handlers: small functions that glue the pure policy to the wire.

Each is a module-level ``(binding, **kwargs)`` function (the guard binds the first
argument per client). They run on the calling thread, s3transfer's workers included, and
keep per-call state only in botocore's ``context`` dict, which travels with one call
through every event and retry.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import BucketEncryptionLookupError, PolicyViolation
from .policy import (
    BucketDefault,
    Decision,
    Given,
    decide,
    is_access_point,
    resolve_required,
)
from .settings import SSEC, ClientSide, Encryption, FollowBucket, sse_c_params

if TYPE_CHECKING:
    from .guard import ClientBinding

logger = logging.getLogger("sse_guard")

# Where the resolved encryption for this call is kept, for the envelope handlers, and the
# client making it (they make calls of their own: instruction files, aborts).
CONTEXT_KEY = "sse_guard_encryption"
CLIENT_KEY = "sse_guard_client"

_READS = frozenset({"GetObject", "HeadObject"})

# The form fields of a presigned POST that carry each request parameter.
_POST_FIELDS = {
    "ServerSideEncryption": "x-amz-server-side-encryption",
    "SSEKMSKeyId": "x-amz-server-side-encryption-aws-kms-key-id",
    "SSEKMSEncryptionContext": "x-amz-server-side-encryption-context",
    "BucketKeyEnabled": "x-amz-server-side-encryption-bucket-key-enabled",
}


_SSE_PARAM_NAMES = ("ServerSideEncryption", "SSECustomerKey", "SSECustomerKeyMD5", "SSEKMSKeyId")
_NOTHING_GIVEN = Given()


def given_from_params(params: Mapping[str, Any], *, prefix: str = "") -> Given:
    """What encryption the caller asked for, read from API parameters (or POST fields)."""
    if not prefix and not any(name in params for name in _SSE_PARAM_NAMES):
        return _NOTHING_GIVEN  # the common case, on every guarded write
    sse_c_md5 = params.get(f"{prefix}SSECustomerKeyMD5")
    sse_c_key = params.get(f"{prefix}SSECustomerKey")
    if sse_c_key is not None and sse_c_md5 is None:
        raw = sse_c_key.encode() if isinstance(sse_c_key, str) else sse_c_key
        sse_c_md5 = base64.b64encode(hashlib.md5(raw, usedforsecurity=False).digest()).decode()
    if prefix:
        return Given(sse_c_key_md5=sse_c_md5)
    return Given(
        algorithm=params.get("ServerSideEncryption"),
        kms_key_id=params.get("SSEKMSKeyId"),
        bucket_key=params.get("BucketKeyEnabled"),
        context=params.get("SSEKMSEncryptionContext"),
        sse_c_key_md5=sse_c_md5,
    )


def _bucket_default_for(
    binding: ClientBinding,
    bucket: str,
    *,
    params: Mapping[str, Any],
    offline: bool,
) -> tuple[BucketDefault | None, bool]:
    """(the bucket's default or None for "use the fallback", known?).

    Fail closed: a failed lookup raises unless the policy says ``on_lookup_error =
    "fallback"``. ``offline`` (presigning) never fetches: unknown is reported as such.
    """
    guard = binding.guard
    if is_access_point(bucket):
        if guard.policy.on_lookup_error == "fallback":
            return None, True
        raise BucketEncryptionLookupError(
            f"{bucket!r} is an access point or alias: its bucket's default encryption cannot be "
            "read; add a policy rule that matches it, or set on_lookup_error = 'fallback'",
            bucket=bucket,
        )
    if offline:
        cached = binding.peek_bucket_default(bucket)
        return cached, cached is not None
    try:
        return binding.bucket_default(bucket, expected_owner=params.get("ExpectedBucketOwner")), True
    except BucketEncryptionLookupError:
        guard.count("lookup_failures")
        if guard.policy.on_lookup_error == "fallback" or guard.mode == "audit":
            logger.warning("lookup of bucket %s failed; using the fallback", bucket)
            return None, True
        raise


def _apply(binding: ClientBinding, decision: Decision, operation: str, bucket: str, key: str, params: dict[str, Any]) -> None:
    """Carry out a decision according to the guard's mode."""
    guard = binding.guard
    problem = decision.impossible or decision.shortfall
    if guard.mode == "audit":
        if problem or decision.add:
            guard.count("audited")
            what = f"would refuse: {problem}" if problem else "would inject " + ", ".join(sorted(decision.add))
            logger.warning("audit: %s s3://%s/%s: %s", operation, bucket, key, what)
        return
    if decision.impossible or (decision.shortfall and guard.mode == "enforce"):
        guard.count("refused")
        raise PolicyViolation(
            f"{operation} s3://{bucket}/{key} refused: {problem}",
            operation=operation,
            bucket=bucket,
            key=key,
            required=decision.required.describe(),
        )
    if decision.shortfall:
        guard.count("left_alone")
        logger.info("%s s3://%s/%s: caller's explicit encryption left alone: %s", operation, bucket, key, problem)
        return
    if decision.add:
        for name, value in decision.add.items():
            params.setdefault(name, value)
        guard.count("injected")


def guard_object_write(binding: ClientBinding, params: dict[str, Any], context: dict[str, Any], model: Any, **kwargs: Any) -> None:
    """PutObject, CopyObject, CreateMultipartUpload: the writes that carry server-side SSE.

    Runs on provide-client-params, before botocore's own SSE-C handler base64-encodes a
    raw key, so an injected SSE-C key goes through it like the caller's own.
    """
    bucket, key = params.get("Bucket"), params.get("Key")
    if not isinstance(bucket, str) or not isinstance(key, str):
        return  # parameter validation will reject the call
    guard = binding.guard
    operation = model.name
    presign = bool(context.get("is_presign_request"))
    rule = guard.policy.rule_for(bucket, key)
    given = given_from_params(params)
    bucket_default: BucketDefault | None = None
    if isinstance(rule, (FollowBucket, SSEC)) or given.sse_c_key_md5 is not None:
        offline = presign and not guard.policy.presign_lookup
        bucket_default, known = _bucket_default_for(binding, bucket, params=params, offline=offline)
        if not known and isinstance(rule, FollowBucket):
            # A presigned request with a cold cache: S3 applies the bucket default itself.
            guard.count("presign_unresolved")
            logger.info("presigned %s s3://%s/%s: bucket default not cached; no SSE header signed", operation, bucket, key)
            return
    required = resolve_required(guard.policy, rule, bucket_default)
    if isinstance(required, ClientSide) and guard.mode == "audit":
        guard.count("audited")  # the body goes out as given: audit changes nothing
        logger.warning("audit: %s s3://%s/%s: would encrypt client-side", operation, bucket, key)
        return
    context[CONTEXT_KEY] = required
    context[CLIENT_KEY] = binding.client()
    if isinstance(required, ClientSide):
        _check_client_side_write(binding, operation, bucket, key, params, presign)
        return
    if presign and isinstance(required, SSEC):
        decision = Decision(required, impossible="an SSE-C write cannot be presigned: the uploader would need the key")
    else:
        decision = decide(bucket, given, required, bucket_default=bucket_default, same_key=guard.same_kms_key)
    _apply(binding, decision, operation, bucket, key, params)


def _check_client_side_write(binding: ClientBinding, operation: str, bucket: str, key: str, params: Mapping[str, Any], presign: bool) -> None:
    """Client-side rules need the body in this process; refuse the writes that bypass it."""
    reason = None
    if presign:
        reason = "a presigned upload cannot be encrypted client-side"
    elif operation == "CopyObject":
        source = copy_source(params.get("CopySource"))
        if source is None or not isinstance(binding.guard.policy.rule_for(*source), ClientSide):
            reason = "a copy into a client-side prefix from outside one would store plaintext"
    if reason is None:
        return
    if binding.guard.mode == "audit":
        binding.guard.count("audited")
        logger.warning("audit: %s s3://%s/%s: would refuse: %s", operation, bucket, key, reason)
        return
    binding.guard.count("refused")
    raise PolicyViolation(f"{operation} s3://{bucket}/{key} refused: {reason}", operation=operation, bucket=bucket, key=key, required="client-side")


def guard_sse_c_only(binding: ClientBinding, params: dict[str, Any], context: dict[str, Any], model: Any, **kwargs: Any) -> None:
    """Operations that carry only SSE-C: the key must repeat on every part and on reads.

    UploadPart, UploadPartCopy, CompleteMultipartUpload, GetObject, HeadObject,
    AbortMultipartUpload. No bucket lookup: SSE-C only ever comes from a policy rule.
    """
    bucket, key = params.get("Bucket"), params.get("Key")
    if not isinstance(bucket, str) or not isinstance(key, str):
        return
    guard = binding.guard
    rule = guard.policy.rule_for(bucket, key)
    if isinstance(rule, ClientSide) and guard.mode == "audit":
        if model.name not in _READS:
            return  # audit writes go out unencrypted (see guard_object_write)
        # Reads still decrypt what is encrypted, and let through what audit let be written.
        rule = dataclasses.replace(rule, unsafe_allow_plaintext=True)
    context[CONTEXT_KEY] = rule
    context[CLIENT_KEY] = binding.client()
    if isinstance(rule, SSEC) and model.name != "AbortMultipartUpload":
        _sse_c(binding, rule, model.name, bucket, key, params, prefix="")


def guard_copy_source(binding: ClientBinding, params: dict[str, Any], model: Any, **kwargs: Any) -> None:
    """CopyObject/UploadPartCopy from an SSE-C source need the source's key too."""
    source = copy_source(params.get("CopySource"))
    if source is None:
        return
    rule = binding.guard.policy.rule_for(*source)
    if isinstance(rule, SSEC):
        _sse_c(binding, rule, model.name, source[0], source[1], params, prefix="CopySource")


def _sse_c(binding: ClientBinding, rule: SSEC, operation: str, bucket: str, key: str, params: dict[str, Any], *, prefix: str) -> None:
    given = given_from_params(params, prefix=prefix)
    if given.sse_c_key_md5 is None:
        if binding.guard.mode == "audit":
            binding.guard.count("audited")
            logger.warning("audit: %s s3://%s/%s: would add the SSE-C key", operation, bucket, key)
            return
        params.update(sse_c_params(rule, prefix=prefix))
        binding.guard.count("injected")
    elif given.sse_c_key_md5 != rule.key_md5:
        decision = Decision(rule, shortfall="SSE-C is required with another key than the request's")
        _apply(binding, decision, operation, bucket, key, params)


def copy_source(value: Any) -> tuple[str, str] | None:
    """(bucket, key) of a CopySource given as a dict or as 'bucket/key[?versionId=...]'."""
    if isinstance(value, Mapping):
        bucket, key = value.get("Bucket"), value.get("Key")
        if isinstance(bucket, str) and isinstance(key, str):
            return bucket, key
        return None
    if isinstance(value, str):
        path = value.lstrip("/")
        path = path.split("?versionId=", 1)[0]
        bucket, sep, key = path.partition("/")
        return (bucket, key) if sep else None
    return None


def guard_presigned_post(binding: ClientBinding, request: Any, **kwargs: Any) -> None:
    """generate_presigned_post: add the SSE form fields and the matching policy conditions.

    botocore builds the POST on CreateBucket's model and signs it as PutObject; the
    fields and policy ride in ``request.context`` until this point, so this is the last
    place they can change.
    """
    fields = request.context.get("s3-presign-post-fields")
    policy_doc = request.context.get("s3-presign-post-policy")
    if fields is None or policy_doc is None:
        return  # an ordinary PutObject being signed
    conditions = policy_doc.setdefault("conditions", [])
    bucket = next((c["bucket"] for c in conditions if isinstance(c, dict) and "bucket" in c), None)
    key = fields.get("key")
    if not isinstance(bucket, str) or not isinstance(key, str):
        return
    if key.endswith("${filename}"):
        key = key[: -len("${filename}")]
    given_params = {param: fields[name] for param, name in _POST_FIELDS.items() if name in fields}
    guard = binding.guard
    rule = guard.policy.rule_for(bucket, key)
    bucket_default = None
    if isinstance(rule, FollowBucket):
        bucket_default, known = _bucket_default_for(binding, bucket, params={}, offline=not guard.policy.presign_lookup)
        if not known:
            guard.count("presign_unresolved")
            return
    required: Encryption = resolve_required(guard.policy, rule, bucket_default)
    if isinstance(required, (SSEC, ClientSide)):
        decision = Decision(required, impossible=f"a presigned POST cannot carry {required.label}")
    else:
        decision = decide(bucket, given_from_params(given_params), required, bucket_default=bucket_default, same_key=guard.same_kms_key)
    added: dict[str, Any] = {}
    _apply(binding, decision, "PresignedPost", bucket, key, added)
    for param, value in added.items():
        name = _POST_FIELDS[param]
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        fields[name] = text
        conditions.append({name: text})


# (event, handler): the whole of what a guard registers on a client, besides the
# client-side encryption handlers of ``envelope.handlers``.
HANDLERS: tuple[tuple[str, Any], ...] = (
    ("provide-client-params.s3.PutObject", guard_object_write),
    ("provide-client-params.s3.CopyObject", guard_object_write),
    ("provide-client-params.s3.CreateMultipartUpload", guard_object_write),
    ("provide-client-params.s3.UploadPart", guard_sse_c_only),
    ("provide-client-params.s3.UploadPartCopy", guard_sse_c_only),
    ("provide-client-params.s3.CompleteMultipartUpload", guard_sse_c_only),
    ("provide-client-params.s3.AbortMultipartUpload", guard_sse_c_only),
    ("provide-client-params.s3.GetObject", guard_sse_c_only),
    ("provide-client-params.s3.HeadObject", guard_sse_c_only),
    ("provide-client-params.s3.CopyObject", guard_copy_source),
    ("provide-client-params.s3.UploadPartCopy", guard_copy_source),
    ("before-sign.s3.PutObject", guard_presigned_post),
)

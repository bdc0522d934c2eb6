"""Re-encrypt findings in place without losing data, metadata or newer writes.

One ``FixResult`` per finding: ``fixed``, ``skipped`` (with the reason), ``failed`` (with
the error), or ``planned`` in a dry run. What the fixer never does: rewrite an object
that already meets the policy or is encrypted otherwise (DSSE-KMS stays DSSE-KMS, aws:fsx
and aws:backup are left alone), copy a non-current version over the current one, delete
a version unless asked (and never under object lock), touch SSE-C objects without their
key, or copy archived objects before they are restored.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import urllib.parse
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import BucketEncryptionLookupError
from ..settings import (
    DSSEKMS,
    SSEC,
    SSEKMS,
    ClientSide,
    ServerSide,
    sse_c_params,
    to_request_params,
)
from ._classify import Classifier, observe_head
from ._concurrency import error_kind, error_text
from ._records import ScanRecord

__all__ = ["FixResult", "Fixer", "GiB", "MiB"]

MiB = 1024 * 1024
GiB = 1024 * MiB
COPY_LIMIT = 5 * GiB  # the largest object a single CopyObject may copy
ARCHIVED = ("GLACIER", "DEEP_ARCHIVE")
_CHECKSUMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
# Metadata a multipart copy does not carry over by itself.
_CARRIED = (
    "ContentType",
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "Expires",
    "WebsiteRedirectLocation",
)


_GRANT_PARAMS = {
    "READ": "GrantRead",
    "WRITE": "GrantWrite",
    "READ_ACP": "GrantReadACP",
    "WRITE_ACP": "GrantWriteACP",
    "FULL_CONTROL": "GrantFullControl",
}


@dataclass(frozen=True)
class FixResult:
    """What happened to one finding. ``status``: fixed | skipped | failed | planned."""

    bucket: str
    key: str
    version_id: str | None
    status: str
    reason: str
    action: str | None = None
    new_version_id: str | None = None
    encryption: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Skip(Exception):
    def __init__(self, reason: str, status: str = "skipped", action: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.action = action


class Fixer:
    """Fixes findings with CopyObject (or multipart UploadPartCopy above the threshold).

    ``client`` must be a plain S3 client (not guarded): the fixer states the required
    encryption explicitly on every copy. Dry run unless ``apply``.
    """

    def __init__(
        self,
        client: Any,
        classifier: Classifier,
        *,
        apply: bool = False,
        multipart_threshold: int = COPY_LIMIT,
        part_size: int = 512 * MiB,
        request_payer: bool = False,
        restore: bool = False,
        restore_days: int = 7,
        restore_tier: str = "Standard",
        delete_old_versions: bool = False,
        results_file: str | os.PathLike[str] | None = None,
        workers: int = 8,
    ) -> None:
        if part_size < 5 * MiB:
            raise ValueError("S3 parts must be at least 5 MiB")
        self.client = client
        self.classifier = classifier
        self.apply = apply
        self.multipart_threshold = min(multipart_threshold, COPY_LIMIT)
        self.part_size = part_size
        self.request_payer = request_payer
        self.restore = restore
        self.restore_days = restore_days
        self.restore_tier = restore_tier
        self.delete_old_versions = delete_old_versions
        self.results_file = Path(results_file) if results_file is not None else None
        self.workers = max(1, workers)
        self._lock = threading.Lock()
        self._owner_enforced: dict[str, bool] = {}
        self._locked_buckets: dict[str, bool] = {}
        self._previous = self._read_results()

    # -- public -------------------------------------------------------------------------

    def fix(self, records: Iterable[ScanRecord]) -> Iterator[FixResult]:
        """One result per finding in ``records`` (others are ignored), as they finish."""
        log = self.results_file.open("a", encoding="utf-8") if self.results_file is not None else None
        try:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sse-guard-fix") as pool:
                pending: deque[Future[FixResult]] = deque()
                for record in records:
                    if not record.is_finding:
                        continue
                    previous = self._previous.get((record.bucket, record.key, record.version_id))
                    if previous is not None:
                        yield FixResult(**{**previous.to_dict(), "reason": f"(results log) {previous.reason}"})
                        continue
                    pending.append(pool.submit(self.fix_one, record))
                    while len(pending) >= self.workers * 2 or (pending and pending[0].done()):
                        yield self._logged(pending.popleft().result(), log)
                while pending:
                    yield self._logged(pending.popleft().result(), log)
        finally:
            if log is not None:
                log.close()

    def fix_one(self, record: ScanRecord) -> FixResult:
        try:
            return self._fix(record)
        except _Skip as s:
            return self._result(record, s.status, s.reason, action=s.action)
        except (ClientError, BotoCoreError) as e:
            return self._result(record, "failed", error_text(e))
        except BucketEncryptionLookupError as e:
            return self._result(record, "failed", str(e))

    # -- results log --------------------------------------------------------------------

    def _read_results(self) -> dict[tuple[str, str, str | None], FixResult]:
        done: dict[tuple[str, str, str | None], FixResult] = {}
        if self.results_file is None or not self.results_file.exists():
            return done
        with self.results_file.open(encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                r = FixResult(**json.loads(line))
                if r.status in ("fixed", "skipped"):
                    done[(r.bucket, r.key, r.version_id)] = r
                else:
                    done.pop((r.bucket, r.key, r.version_id), None)
        return done

    def _logged(self, result: FixResult, log: Any) -> FixResult:
        if log is not None and result.status != "planned":
            with self._lock:
                log.write(json.dumps(result.to_dict()) + "\n")
                log.flush()
        return result

    # -- one finding --------------------------------------------------------------------

    def _result(self, record: ScanRecord, status: str, reason: str, **kw: Any) -> FixResult:
        return FixResult(record.bucket, record.key, record.version_id, status, reason, **kw)

    def _base(self, record: ScanRecord) -> dict[str, Any]:
        params: dict[str, Any] = {"Bucket": record.bucket, "Key": record.key}
        if self.request_payer:
            params["RequestPayer"] = "requester"
        return params

    def _head(self, record: ScanRecord, version_id: str | None) -> dict[str, Any]:
        params = {**self._base(record), "ChecksumMode": "ENABLED"}
        if version_id is not None:
            params["VersionId"] = version_id
        try:
            head: dict[str, Any] = self.client.head_object(**params)
        except ClientError as e:
            kind = error_kind(e)
            if kind == "bad-request":
                raise _Skip("SSE-C object: it cannot be copied without its key") from e
            if kind == "not-found":
                raise _Skip("gone since the scan") from e
            raise
        return head

    def _fix(self, record: ScanRecord) -> FixResult:
        if record.encryption == "SSE-C":
            raise _Skip("SSE-C object: it cannot be copied without its key")
        pinned = record.version_id if record.version_id not in (None, "null") else None
        head = self._head(record, pinned)
        if pinned is not None and not self._is_current(record, pinned):
            return self._old_version(record, head)
        if record.etag is not None and head.get("ETag") != record.etag:
            raise _Skip("changed since the scan (ETag differs)")
        obs = observe_head(head)
        if obs.encryption == "SSE-C":
            raise _Skip("SSE-C object: it cannot be copied without its key")
        required = self.classifier.required(record.bucket, record.key)
        shortfall = self.classifier.judge(required, obs)
        if shortfall is None:
            raise _Skip("already compliant: not rewritten")
        if isinstance(required, ClientSide):
            raise _Skip(
                "client-side encryption is required: a server-side copy cannot apply it; "
                "re-upload the object through a guarded client"
            )
        if obs.encryption == "OTHER":
            raise _Skip(f"encrypted with {obs.algorithm}: not rewritten")
        target: ServerSide = required
        if obs.encryption == "DSSE-KMS" and isinstance(required, SSEKMS):
            if not obs.kms_key_id:
                raise _Skip("DSSE-KMS under a key S3 did not report: left alone")
            # Keep both layers; only the key changes.
            target = DSSEKMS(key_id=required.key_id, context=required.context)
        self._check_archive(record, head)
        size = int(head.get("ContentLength", 0))
        multipart = size > self.multipart_threshold
        action = "multipart-copy" if multipart else "copy"
        if not self.apply:
            return self._result(
                record, "planned", f"would re-encrypt in place as {target.describe()} ({shortfall})", action=action
            )
        acl = self._acl(record, pinned)
        etag = str(head["ETag"])
        source: dict[str, Any] = {"Bucket": record.bucket, "Key": record.key}
        if pinned is not None:
            source["VersionId"] = pinned
        try:
            if multipart:
                resp = self._multipart_copy(record, head, source, etag, target, pinned, acl)
            else:
                resp = self._copy(record, head, source, etag, target, pinned, acl)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "PreconditionFailed" or status == 412:
                raise _Skip("changed since the scan (the copy's ETag condition failed)") from e
            raise
        new_version = resp.get("VersionId")
        if new_version == "null":  # an unversioned bucket
            new_version = None
        after = observe_head(resp)
        if after.encryption != target.label and not (after.algorithm is None and isinstance(target, SSEC)):
            return self._result(
                record,
                "failed",
                f"the copy came out as {after.server_side()}, not {target.describe()}",
                action=action,
                new_version_id=new_version,
            )
        if acl is not None and "GrantWrite" in acl:
            # WRITE cannot ride on a copy: re-apply the whole ACL right after it.
            try:
                params = {**self._base(record), **acl}
                if new_version:
                    params["VersionId"] = new_version
                self.client.put_object_acl(**params)
            except ClientError as e:
                return self._result(
                    record,
                    "failed",
                    f"re-encrypted, but its ACL grants could not be re-applied: {error_text(e)}",
                    action=action,
                    new_version_id=new_version,
                    encryption=target.label,
                )
        reason = f"re-encrypted as {target.describe()}"
        if pinned is not None:
            reason += self._after_old_version(record, pinned, head)
        return self._result(
            record, "fixed", reason, action=action, new_version_id=new_version, encryption=target.label
        )

    def _is_current(self, record: ScanRecord, version_id: str) -> bool:
        if record.is_latest is not None:
            return record.is_latest
        try:
            current = self.client.head_object(**self._base(record)).get("VersionId")
        except ClientError as e:
            if error_kind(e) == "not-found":
                return False  # under a delete marker
            raise
        return bool(current == version_id)

    def _old_version(self, record: ScanRecord, head: dict[str, Any]) -> FixResult:
        """A non-current version: copying it in place would make old content current."""
        keep = "non-current version: re-encrypting it in place would make it current; its plaintext stays"
        if not self.delete_old_versions:
            raise _Skip(f"{keep} (delete it with --delete-old-versions)")
        if self._bucket_locked(record.bucket) or head.get("ObjectLockMode") or head.get("ObjectLockLegalHoldStatus") == "ON":
            raise _Skip(f"{keep}: object lock: refusing to delete versions")
        if not self.apply:
            return self._result(record, "planned", "would delete this non-current plaintext version", action="delete-version")
        self.client.delete_object(**self._base(record), VersionId=record.version_id)
        return self._result(record, "fixed", "deleted this non-current plaintext version", action="delete-version")

    def _after_old_version(self, record: ScanRecord, version_id: str, head: dict[str, Any]) -> str:
        if not self.delete_old_versions:
            return f"; the previous plaintext version {version_id} remains (--delete-old-versions deletes it)"
        if self._bucket_locked(record.bucket) or head.get("ObjectLockMode") or head.get("ObjectLockLegalHoldStatus") == "ON":
            return f"; the previous version {version_id} is under object lock and was kept"
        self.client.delete_object(**self._base(record), VersionId=version_id)
        return f"; the previous plaintext version {version_id} was deleted"

    def _check_archive(self, record: ScanRecord, head: dict[str, Any]) -> None:
        storage = head.get("StorageClass") or "STANDARD"
        archived = storage in ARCHIVED or bool(head.get("ArchiveStatus"))
        if not archived:
            return
        restore = str(head.get("Restore") or "")
        if 'ongoing-request="false"' in restore:
            return  # a restored copy is available
        if 'ongoing-request="true"' in restore:
            raise _Skip(f"archived in {storage}: restore in progress; run fix again when it completes")
        if not self.restore:
            raise _Skip(f"archived in {storage}: restore it first (--restore)")
        if not self.apply:
            raise _Skip(f"archived in {storage}: would request a restore", status="planned", action="restore")
        params = self._base(record)
        if record.version_id not in (None, "null"):
            params["VersionId"] = record.version_id
        request: dict[str, Any] = {}
        if storage in ARCHIVED:
            request = {"Days": self.restore_days, "GlacierJobParameters": {"Tier": self.restore_tier}}
        self.client.restore_object(**params, RestoreRequest=request)
        raise _Skip(f"archived in {storage}: restore requested; run fix again when it completes", action="restore")

    def _bucket_locked(self, bucket: str) -> bool:
        with self._lock:
            if bucket in self._locked_buckets:
                return self._locked_buckets[bucket]
        try:
            conf = self.client.get_object_lock_configuration(Bucket=bucket)
            locked: bool = conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        except ClientError as e:
            locked = error_kind(e) == "denied"  # cannot tell: assume locked, never delete
        with self._lock:
            self._locked_buckets[bucket] = locked
        return locked

    def _owner_is_enforced(self, bucket: str) -> bool:
        with self._lock:
            if bucket in self._owner_enforced:
                return self._owner_enforced[bucket]
        try:
            rules = self.client.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
            enforced = any(r.get("ObjectOwnership") == "BucketOwnerEnforced" for r in rules)
        except ClientError:
            enforced = False
        with self._lock:
            self._owner_enforced[bucket] = enforced
        return enforced

    def _acl(self, record: ScanRecord, version_id: str | None) -> dict[str, str] | None:
        """The object's grants as ``Grant*`` parameters (a copy resets them to private).

        Sent on the copy itself, so the new version is never private in between; as
        headers rather than an ``AccessControlPolicy`` body, which S3 accepts alike.
        """
        if self._owner_is_enforced(record.bucket):
            return None  # ACLs are disabled: nothing to lose
        params = self._base(record)
        if version_id is not None:
            params["VersionId"] = version_id
        try:
            acl = self.client.get_object_acl(**params)
        except ClientError as e:
            raise _Skip(f"its ACL cannot be read ({error_text(e)}): not copied, grants would be lost") from e
        owner = acl.get("Owner", {})
        grants = acl.get("Grants", [])
        private = all(
            g.get("Permission") == "FULL_CONTROL" and g.get("Grantee", {}).get("ID") == owner.get("ID") for g in grants
        )
        if private:
            return None
        by_permission: dict[str, list[str]] = {}
        for g in grants:
            grantee = g.get("Grantee", {})
            if grantee.get("URI"):
                who = f'uri="{grantee["URI"]}"'
            elif grantee.get("ID"):
                who = f'id="{grantee["ID"]}"'
            elif grantee.get("EmailAddress"):
                who = f'emailAddress="{grantee["EmailAddress"]}"'
            else:
                raise _Skip("an ACL grant of an unknown kind: not copied, it would be lost")
            param = _GRANT_PARAMS.get(str(g.get("Permission")))
            if param is None:
                raise _Skip(f"an ACL grant {g.get('Permission')!r} of an unknown kind: not copied")
            by_permission.setdefault(param, []).append(who)
        return {param: ", ".join(who) for param, who in by_permission.items()}

    def _common(self, head: dict[str, Any], target: ServerSide) -> dict[str, Any]:
        params: dict[str, Any] = {"StorageClass": head.get("StorageClass") or "STANDARD", **to_request_params(target)}
        algorithm = next((a for a in _CHECKSUMS if head.get(f"Checksum{a}")), None)
        if algorithm is not None:
            params["ChecksumAlgorithm"] = algorithm
        for name in ("ObjectLockMode", "ObjectLockRetainUntilDate", "ObjectLockLegalHoldStatus"):
            if head.get(name) is not None:
                params[name] = head[name]
        return params

    def _copy(
        self,
        record: ScanRecord,
        head: dict[str, Any],
        source: dict[str, Any],
        etag: str,
        target: ServerSide,
        pinned: str | None,
        acl: dict[str, str] | None,
    ) -> dict[str, Any]:
        params = {
            **self._base(record),
            "CopySource": source,  # a dict: a string would split keys containing "?versionId="
            "CopySourceIfMatch": etag,
            "MetadataDirective": "COPY",
            "TaggingDirective": "COPY",
            **self._common(head, target),
            **{k: v for k, v in (acl or {}).items() if k != "GrantWrite"},
        }
        if pinned is not None:
            # The source version is pinned, so its ETag cannot change: the destination
            # condition is what stops a newer concurrent write from being buried.
            params["IfMatch"] = etag
        resp: dict[str, Any] = self.client.copy_object(**params)
        return resp

    def _multipart_copy(
        self,
        record: ScanRecord,
        head: dict[str, Any],
        source: dict[str, Any],
        etag: str,
        target: ServerSide,
        pinned: str | None,
        acl: dict[str, str] | None,
    ) -> dict[str, Any]:
        base = self._base(record)
        create: dict[str, Any] = {**base, **self._common(head, target)}
        create.update({k: v for k, v in (acl or {}).items() if k != "GrantWrite"})
        for name in _CARRIED:
            if head.get(name) is not None:
                create[name] = head[name]
        create["Metadata"] = head.get("Metadata", {})
        tag_params = {**base, **({"VersionId": pinned} if pinned else {})}
        tags = self.client.get_object_tagging(**tag_params).get("TagSet", [])
        if tags:
            create["Tagging"] = urllib.parse.urlencode([(t["Key"], t["Value"]) for t in tags])
        upload_id = self.client.create_multipart_upload(**create)["UploadId"]
        sse_c = sse_c_params(target) if isinstance(target, SSEC) else {}
        try:
            parts = []
            size = int(head["ContentLength"])
            for number, start in enumerate(range(0, size, self.part_size), start=1):
                end = min(start + self.part_size, size) - 1
                resp = self.client.upload_part_copy(
                    **base,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={start}-{end}",
                    CopySourceIfMatch=etag,
                    **sse_c,
                )
                result = resp["CopyPartResult"]
                part = {"PartNumber": number, "ETag": result["ETag"]}
                for a in _CHECKSUMS:
                    if result.get(f"Checksum{a}"):
                        part[f"Checksum{a}"] = result[f"Checksum{a}"]
                parts.append(part)
            complete: dict[str, Any] = {**base, "UploadId": upload_id, "MultipartUpload": {"Parts": parts}, **sse_c}
            if pinned is not None:
                complete["IfMatch"] = etag
            done: dict[str, Any] = self.client.complete_multipart_upload(**complete)
        except BaseException:
            # The original error matters more; a lifecycle rule cleans up what remains.
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.abort_multipart_upload(**base, UploadId=upload_id)
            raise
        # CompleteMultipartUpload does not always echo the encryption: ask.
        version = done.get("VersionId")
        pin = {"VersionId": version} if version not in (None, "null") else {}
        check = self.client.head_object(**base, **pin, **sse_c)
        done.setdefault("ServerSideEncryption", check.get("ServerSideEncryption"))
        if check.get("SSEKMSKeyId"):
            done.setdefault("SSEKMSKeyId", check["SSEKMSKeyId"])
        return done

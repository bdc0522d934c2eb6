"""Classify an S3 Inventory report: no request per object.

``manifest.json`` is checked against ``manifest.checksum`` (its MD5) and every data file
against its ``MD5checksum`` before a row is read. CSV data files are gzipped, have no
header row, URL-encode keys and are mapped by name through ``fileSchema``; Parquet and
ORC need pyarrow (the ``parquet`` extra). Rows stream: memory does not grow with the
report (data files are spooled to a temporary file while their MD5 is checked).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import tempfile
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import BucketEncryptionLookupError, ConfigurationError, SSEGuardError
from ..policy import resolve_required
from ..settings import DSSEKMS, SSEC, SSEKMS, SSES3, ClientSide, Encryption
from ._classify import Classifier, Observed
from ._records import ScanRecord
from ._scanner import ScanTarget, parse_s3_url

__all__ = ["InventoryError", "InventoryManifest", "InventoryReader", "read_inventory"]

_CHUNK = 1024 * 1024

_OBSERVED = {
    "NOT-SSE": Observed("NOT-SSE"),
    "SSE-S3": Observed("SSE-S3", "AES256"),
    "SSE-KMS": Observed("SSE-KMS", "aws:kms"),
    "DSSE-KMS": Observed("DSSE-KMS", "aws:kms:dsse"),
    "SSE-C": Observed("SSE-C"),
}


class InventoryError(SSEGuardError):
    """An inventory report is missing, malformed or fails its checksum."""


@dataclass(frozen=True)
class InventoryManifest:
    bucket: str  # where the report lives
    source_bucket: str
    file_format: str
    columns: tuple[str, ...]
    files: tuple[dict[str, Any], ...]

    @classmethod
    def parse(cls, data: bytes, *, bucket: str) -> InventoryManifest:
        try:
            doc = json.loads(data)
            columns = tuple(c.strip() for c in doc["fileSchema"].split(",")) if doc.get("fileSchema") else ()
            return cls(
                bucket=bucket,
                source_bucket=str(doc["sourceBucket"]),
                file_format=str(doc["fileFormat"]).upper(),
                columns=columns,
                files=tuple(doc["files"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise InventoryError(f"not an S3 Inventory manifest: {e}") from e


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def read_manifest(client: Any, url: str) -> InventoryManifest:
    """Fetch ``manifest.json`` and check it against ``manifest.checksum`` beside it."""
    target = parse_s3_url(url)
    if not target.prefix.endswith("manifest.json"):
        raise InventoryError(f"{url}: expected the URL of an inventory manifest.json")
    try:
        data = client.get_object(Bucket=target.bucket, Key=target.prefix)["Body"].read()
        checksum_key = target.prefix[: -len("manifest.json")] + "manifest.checksum"
        expected = client.get_object(Bucket=target.bucket, Key=checksum_key)["Body"].read().decode().strip()
    except (ClientError, BotoCoreError) as e:
        raise InventoryError(f"{url}: cannot read the manifest or its checksum: {e}") from e
    if _md5(data) != expected.lower():
        raise InventoryError(f"{url}: manifest.json does not match manifest.checksum")
    return InventoryManifest.parse(data, bucket=target.bucket)


class InventoryReader:
    """Turns inventory rows into scan records, judged against the classifier's policy."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier
        self._judged: dict[tuple[int, str, str], tuple[bool, str]] = {}
        self._required: dict[tuple[str, int], Encryption | None] = {}
        self._rules: dict[str, list[tuple[str, Encryption | None]]] = {}

    # -- requirement lookup, hot path ----------------------------------------------------

    def _bucket_rules(self, bucket: str) -> list[tuple[str, Encryption | None]]:
        rules = self._rules.get(bucket)
        if rules is None:
            policy = self.classifier.policy
            rules = []
            for rule in policy.rules:
                if rule.matches(bucket, rule.prefix):
                    rules.append((rule.prefix, self._resolve(bucket, rule.encryption)))
                    if not rule.prefix:
                        break
            else:
                rules.append(("", self._resolve(bucket, policy.default)))
            self._rules[bucket] = rules
        return rules

    def _resolve(self, bucket: str, rule: Any) -> Encryption | None:
        if isinstance(rule, (SSES3, SSEKMS, DSSEKMS, SSEC, ClientSide)):
            return rule
        try:
            default = self.classifier.bucket_default(bucket)
        except BucketEncryptionLookupError:
            if self.classifier.policy.on_lookup_error == "fallback":
                return self.classifier.policy.fallback
            return None
        return resolve_required(self.classifier.policy, rule, default)

    def required(self, bucket: str, key: str) -> Encryption | None:
        for prefix, enc in self._bucket_rules(bucket):
            if key.startswith(prefix):
                return enc
        return None  # unreachable: the last entry has an empty prefix

    def verdict(self, required: Encryption, status: str, bucket_key: str) -> tuple[bool, str]:
        cache_key = (id(required), status, bucket_key)
        hit = self._judged.get(cache_key)
        if hit is not None:
            return hit
        obs = _OBSERVED.get(status, Observed("OTHER", status or None))
        if obs.algorithm == "aws:kms":
            obs = Observed("SSE-KMS", "aws:kms", bucket_key=bucket_key == "ENABLED")
        reason = self.classifier.judge(required, obs)
        if reason is not None and "did not report" in reason:
            reason = f"{required.describe()} is required; the inventory does not show the KMS key (--verify checks it)"
        elif reason is not None and isinstance(required, ClientSide):
            reason = "client-side encryption is required; the inventory has no object metadata (--verify checks it)"
        verdict = (reason is None, reason or f"meets {required.describe()}")
        self._judged[cache_key] = verdict
        return verdict

    # -- rows ---------------------------------------------------------------------------

    def records(self, rows: Iterable[dict[str, str]], *, source_bucket: str) -> Iterator[ScanRecord]:
        """Records from inventory rows given as {column name: value}."""
        for row in rows:
            if row.get("IsDeleteMarker", "").lower() == "true":
                continue
            yield self._record(
                row.get("Bucket") or source_bucket,
                row["Key"],
                row.get("VersionId") or None,
                row.get("Size", ""),
                row.get("StorageClass") or None,
                row.get("EncryptionStatus", ""),
                row.get("BucketKeyStatus", ""),
                row.get("IsLatest", ""),
                row.get("ObjectLockMode", ""),
                row.get("ObjectLockRetainUntilDate", ""),
                row.get("ObjectLockLegalHoldStatus", ""),
                row.get("ETag") or None,
            )

    def csv_records(self, stream: IO[bytes], columns: tuple[str, ...], *, source_bucket: str) -> Iterator[ScanRecord]:
        """Records from one gzipped inventory CSV data file (no header row)."""
        index = {name: i for i, name in enumerate(columns)}
        if "Key" not in index:
            raise InventoryError("the inventory's fileSchema has no Key column")

        def col(name: str) -> int:
            return index.get(name, -1)

        ib, ik, iv, isz, isc = col("Bucket"), index["Key"], col("VersionId"), col("Size"), col("StorageClass")
        ie, ibk, il, idm = col("EncryptionStatus"), col("BucketKeyStatus"), col("IsLatest"), col("IsDeleteMarker")
        ilm, ilr, ilh, iet = (
            col("ObjectLockMode"),
            col("ObjectLockRetainUntilDate"),
            col("ObjectLockLegalHoldStatus"),
            col("ETag"),
        )
        unquote = urllib.parse.unquote_plus
        text = io.TextIOWrapper(gzip.GzipFile(fileobj=stream), encoding="utf-8", newline="")
        record = self._record
        for row in csv.reader(text):
            if not row:
                continue
            if idm >= 0 and row[idm] == "true":
                continue
            key = row[ik]
            if "%" in key or "+" in key:
                key = unquote(key)
            yield record(
                row[ib] if ib >= 0 else source_bucket,
                key,
                (row[iv] or None) if iv >= 0 else None,
                row[isz] if isz >= 0 else "",
                (row[isc] or None) if isc >= 0 else None,
                row[ie] if ie >= 0 else "",
                row[ibk] if ibk >= 0 else "",
                row[il] if il >= 0 else "",
                row[ilm] if ilm >= 0 else "",
                row[ilr] if ilr >= 0 else "",
                row[ilh] if ilh >= 0 else "",
                (row[iet] or None) if iet >= 0 else None,
            )

    def _record(
        self,
        bucket: str,
        key: str,
        version_id: str | None,
        size: str,
        storage_class: str | None,
        status: str,
        bucket_key: str,
        is_latest: str,
        lock_mode: str,
        lock_until: str,
        legal_hold: str,
        etag: str | None,
    ) -> ScanRecord:
        required = self.required(bucket, key)
        if status == "":
            enc: str | None = None
        else:
            enc = status if status in _OBSERVED else "OTHER"
        lock = (
            {"mode": lock_mode or None, "retain_until": lock_until or None, "legal_hold": legal_hold or None}
            if lock_mode or lock_until or legal_hold
            else None
        )
        if required is None:
            compliant: bool | None = None
            reason = "the bucket's default encryption could not be read"
            error: str | None = "BucketEncryptionLookupError"
        elif enc is None:
            compliant, reason, error = None, "the inventory has no EncryptionStatus column", "NoEncryptionStatus"
        else:
            compliant, reason = self.verdict(required, status, bucket_key)
            error = None
        return ScanRecord(
            bucket,
            key,
            version_id,
            int(size) if size else None,
            storage_class,
            enc,
            None,
            (bucket_key == "ENABLED") if bucket_key else None,
            None,
            lock,
            compliant,
            reason,
            error,
            etag and f'"{etag}"',
            (is_latest == "true") if is_latest else None,
        )


def _spool(client: Any, bucket: str, key: str, expected_md5: str | None) -> IO[bytes]:
    """Download one data file to a temporary file, checking its MD5 on the way."""
    tmp = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
    digest = hashlib.md5(usedforsecurity=False)
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in iter(lambda: body.read(_CHUNK), b""):
            digest.update(chunk)
            tmp.write(chunk)
    except (ClientError, BotoCoreError) as e:
        tmp.close()
        raise InventoryError(f"s3://{bucket}/{key}: cannot read the inventory data file: {e}") from e
    if expected_md5 and digest.hexdigest() != expected_md5.lower():
        tmp.close()
        raise InventoryError(f"s3://{bucket}/{key}: does not match its MD5checksum in the manifest")
    tmp.seek(0)
    return tmp


def _columnar_rows(stream: IO[bytes], file_format: str) -> Iterator[dict[str, str]]:
    try:
        if file_format == "PARQUET":
            import pyarrow.parquet as pq

            batches = pq.ParquetFile(stream).iter_batches(batch_size=10_000)
        else:
            import pyarrow.orc as orc

            f = orc.ORCFile(stream)
            batches = (f.read_stripe(i) for i in range(f.nstripes))
    except ImportError as e:
        raise ConfigurationError(
            f"reading {file_format} inventory files needs pyarrow: pip install 'sse-guard[parquet]'"
        ) from e
    for batch in batches:
        for row in batch.to_pylist():
            yield {
                str(k): ("" if v is None else ("true" if v is True else "false" if v is False else str(v)))
                for k, v in row.items()
            }


def read_inventory(
    client: Any,
    manifest_url: str,
    classifier: Classifier,
    *,
    verify: Callable[[ScanRecord], ScanRecord] | None = None,
    verify_workers: int = 32,
) -> Iterator[ScanRecord]:
    """Records for every object in an inventory report.

    ``verify`` (e.g. ``Scanner.recheck``, one HeadObject) replaces each non-compliant
    record, on ``verify_workers`` threads with a bounded backlog; compliant rows are not
    requested at all.
    """
    manifest = read_manifest(client, manifest_url)
    reader = InventoryReader(classifier)

    def all_records() -> Iterator[ScanRecord]:
        for f in manifest.files:
            stream = _spool(client, manifest.bucket, f["key"], f.get("MD5checksum"))
            with stream:
                if manifest.file_format == "CSV":
                    yield from reader.csv_records(stream, manifest.columns, source_bucket=manifest.source_bucket)
                elif manifest.file_format in ("PARQUET", "ORC"):
                    yield from reader.records(
                        _columnar_rows(stream, manifest.file_format), source_bucket=manifest.source_bucket
                    )
                else:
                    raise InventoryError(f"unknown inventory fileFormat {manifest.file_format!r}")

    if verify is None:
        yield from all_records()
        return
    with ThreadPoolExecutor(max_workers=verify_workers, thread_name_prefix="sse-guard-verify") as pool:
        pending: deque[Future[ScanRecord]] = deque()
        for rec in all_records():
            if rec.compliant is not False or rec.error is not None:
                yield rec
                continue
            pending.append(pool.submit(verify, rec))
            while len(pending) >= verify_workers * 4 or (pending and pending[0].done()):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def inventory_target(manifest: InventoryManifest) -> ScanTarget:
    return ScanTarget(manifest.source_bucket)

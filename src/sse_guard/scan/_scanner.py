"""Listing pipelined with concurrent HeadObject calls; a flat-memory iterator of records.

Shape: listing threads take prefixes from a work queue and put one item per object (or
version) into a bounded queue as soon as each page arrives; HEAD workers drain it under an
``AdaptiveLimit``; records come back through a second bounded queue to the caller's
iterator. Nothing waits for a whole page, and memory does not grow with the bucket.

Prefix fan-out (``fan_out_depth``): a prefix above that depth is listed with
``Delimiter="/"``; its sub-prefixes become new listing tasks that run in parallel.

Checkpoints (``state_file``): each prefix keeps a FIFO of its listed pages and how many of
their records the caller has not yet received; the oldest fully delivered page moves the
prefix's resume marker (``StartAfter``, or ``KeyMarker``/``VersionIdMarker``).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import BucketEncryptionLookupError, ConfigurationError
from ..policy import Policy
from ..settings import SSEC, Encryption, sse_c_params
from ._classify import Classifier, Observed, observe_head
from ._concurrency import AdaptiveLimit, backoff_delay, error_kind, error_text
from ._records import ScanRecord

__all__ = ["ScanStats", "ScanTarget", "Scanner", "parse_s3_url", "scan"]

_POLL = 0.1


@dataclass(frozen=True)
class ScanTarget:
    bucket: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_s3_url(url: str) -> ScanTarget:
    """``s3://bucket[/prefix]`` (or a bare bucket name) as a ``ScanTarget``."""
    rest = url[5:] if url.startswith("s3://") else url
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigurationError(f"{url!r}: expected s3://bucket[/prefix]")
    return ScanTarget(bucket, prefix)


@dataclass
class ScanStats:
    """Counters, readable while a scan runs (for a progress line)."""

    started: float = field(default_factory=time.monotonic)
    listed: int = 0
    inspected: int = 0
    findings: int = 0
    errors: int = 0
    throttled: int = 0
    retries: int = 0
    concurrency: int = 0

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.inspected / elapsed if elapsed > 0 else 0.0


@dataclass
class _Page:
    remaining: int
    marker: dict[str, str] | None  # where to resume once this page is delivered
    closed: bool = False  # all of its items have been queued


class _Prefix:
    """One listing task and its checkpoint."""

    def __init__(self, bucket: str, prefix: str, depth: int, marker: dict[str, str] | None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.depth = depth
        self.marker = marker
        self.pages: deque[_Page] = deque()
        self.listing_done = False
        self.done = False

    @property
    def id(self) -> str:
        return f"{self.bucket}/{self.prefix}"

    def state(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "depth": self.depth,
            "marker": self.marker,
            "done": self.done,
        }


@dataclass(frozen=True)
class _Item:
    bucket: str
    key: str
    version_id: str | None
    size: int | None
    storage_class: str | None
    etag: str | None
    is_latest: bool | None
    prefix: _Prefix
    page: _Page


_DONE = object()


class Scanner:
    """Scans buckets (or prefixes) and yields one ``ScanRecord`` per object or version.

    ``client`` is a plain S3 client; give it ``max_pool_connections`` >= ``max_workers``
    and few retries of its own (``make_s3_client`` does both) so that throttling reaches
    the adaptive limit instead of botocore's fixed backoff.
    """

    def __init__(
        self,
        client: Any,
        *,
        classifier: Classifier | None = None,
        policy: Policy | None = None,
        all_versions: bool = False,
        workers: int = 32,
        max_workers: int = 128,
        list_workers: int = 4,
        fan_out_depth: int = 0,
        state_file: str | os.PathLike[str] | None = None,
        max_attempts: int = 10,
        request_payer: bool = False,
        page_size: int = 1000,
        checkpoint_every: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.classifier = classifier or Classifier(policy or Policy(), s3_client=client)
        self.all_versions = all_versions
        self.max_workers = max(max_workers, workers)
        self.limit = AdaptiveLimit(workers, self.max_workers)
        self.list_workers = max(1, list_workers)
        self.fan_out_depth = fan_out_depth
        self.state_file = Path(state_file) if state_file is not None else None
        self.max_attempts = max_attempts
        self.request_payer = request_payer
        self.page_size = page_size
        self.checkpoint_every = checkpoint_every
        self._sleep = sleep
        self.stats = ScanStats()
        self._lock = threading.Lock()
        self._prefixes: dict[str, _Prefix] = {}
        self._stop = threading.Event()

    # -- public -------------------------------------------------------------------------

    def scan(self, targets: Iterable[ScanTarget | str]) -> Iterator[ScanRecord]:
        """Yield records as objects are inspected (not in listing order)."""
        tasks: queue.Queue[_Prefix | None] = queue.Queue()
        items: queue.Queue[_Item | object] = queue.Queue(maxsize=self.max_workers * 4)
        out: queue.Queue[tuple[ScanRecord, _Item | None] | object] = queue.Queue(
            maxsize=self.max_workers * 4
        )
        self.stats = ScanStats(concurrency=self.limit.limit)
        for p in self._initial_prefixes([t if isinstance(t, ScanTarget) else parse_s3_url(t) for t in targets]):
            if not p.done:
                tasks.put(p)
        threads = [
            threading.Thread(target=self._lister, args=(tasks, items, out), daemon=True, name=f"sse-guard-list-{i}")
            for i in range(self.list_workers)
        ]
        threads += [
            threading.Thread(target=self._header, args=(items, out), daemon=True, name=f"sse-guard-head-{i}")
            for i in range(self.max_workers)
        ]
        threads.append(
            threading.Thread(target=self._closer, args=(tasks, items), daemon=True, name="sse-guard-closer")
        )
        for t in threads:
            t.start()
        finished = 0
        last_checkpoint = time.monotonic()
        try:
            while finished < self.max_workers:
                got = out.get()
                if got is _DONE:
                    finished += 1
                    continue
                assert isinstance(got, tuple)
                record, item = got
                self.stats.inspected += 1
                if record.is_error:
                    self.stats.errors += 1
                elif record.is_finding:
                    self.stats.findings += 1
                self.stats.concurrency = self.limit.limit
                yield record
                if item is not None:
                    self._delivered(item)
                if self.state_file is not None and time.monotonic() - last_checkpoint > self.checkpoint_every:
                    self.checkpoint()
                    last_checkpoint = time.monotonic()
            if self.state_file is not None:
                self.checkpoint()
        finally:
            self._stop.set()
            if self.state_file is not None and finished < self.max_workers:
                self.checkpoint()  # interrupted: keep what was delivered

    def checkpoint(self) -> None:
        """Write the state file (atomically): which prefixes are done, and where to resume."""
        if self.state_file is None:
            return
        with self._lock:
            data = {
                "version": 1,
                "all_versions": self.all_versions,
                "prefixes": [p.state() for p in self._prefixes.values()],
            }
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.state_file)

    # -- state --------------------------------------------------------------------------

    def _initial_prefixes(self, targets: list[ScanTarget]) -> list[_Prefix]:
        if self.state_file is not None and self.state_file.exists():
            try:
                data = json.loads(self.state_file.read_text())
                saved = data["prefixes"]
            except (ValueError, KeyError, TypeError) as e:
                raise ConfigurationError(f"{self.state_file}: not a scan state file") from e
            if bool(data.get("all_versions")) != self.all_versions:
                raise ConfigurationError(f"{self.state_file}: saved with a different --all-versions")
            roots = {f"{t.bucket}/{t.prefix}" for t in targets}
            for entry in saved:
                p = _Prefix(entry["bucket"], entry["prefix"], int(entry["depth"]), entry.get("marker"))
                p.done = bool(entry.get("done"))
                self._prefixes[p.id] = p
            missing = [r for r in roots if r not in self._prefixes]
            for t in targets:
                if f"{t.bucket}/{t.prefix}" in missing:
                    self._prefixes[f"{t.bucket}/{t.prefix}"] = _Prefix(t.bucket, t.prefix, 0, None)
            return list(self._prefixes.values())
        for t in targets:
            p = _Prefix(t.bucket, t.prefix, 0, None)
            self._prefixes.setdefault(p.id, p)
        return list(self._prefixes.values())

    def _delivered(self, item: _Item) -> None:
        with self._lock:
            item.page.remaining -= 1
            self._advance(item.prefix)

    def _advance(self, p: _Prefix) -> None:
        """Move the prefix's marker past every fully delivered page (lock held)."""
        while p.pages and p.pages[0].closed and p.pages[0].remaining == 0:
            page = p.pages.popleft()
            if page.marker is not None:
                p.marker = page.marker
        if p.listing_done and not p.pages:
            p.done = True

    # -- threads ------------------------------------------------------------------------

    def _put(self, q: queue.Queue[Any], value: Any) -> bool:
        while not self._stop.is_set():
            try:
                q.put(value, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _closer(self, tasks: queue.Queue[_Prefix | None], items: queue.Queue[_Item | object]) -> None:
        tasks.join()
        for _ in range(self.list_workers):
            tasks.put(None)
        for _ in range(self.max_workers):
            if not self._put(items, _DONE):
                return

    def _lister(
        self,
        tasks: queue.Queue[_Prefix | None],
        items: queue.Queue[_Item | object],
        out: queue.Queue[Any],
    ) -> None:
        while True:
            p = tasks.get()
            if p is None:
                tasks.task_done()
                return
            try:
                if not self._stop.is_set():
                    self._list_prefix(p, tasks, items, out)
            finally:
                tasks.task_done()

    def _list_prefix(
        self,
        p: _Prefix,
        tasks: queue.Queue[_Prefix | None],
        items: queue.Queue[_Item | object],
        out: queue.Queue[Any],
    ) -> None:
        delimited = p.depth < self.fan_out_depth
        marker = dict(p.marker or {})
        while not self._stop.is_set():
            try:
                page = self._list_page(p, delimited, marker)
            except (ClientError, BotoCoreError) as e:
                # The whole prefix could not be listed: one error record, counted.
                record = ScanRecord.failed(
                    p.bucket, p.prefix, None, error=error_text(e), reason="the listing failed; nothing under this prefix was inspected"
                )
                self._put(out, (record, None))
                with self._lock:
                    p.listing_done = True
                return
            entries, children, next_marker = page
            tracked = _Page(remaining=len(entries), marker=next_marker)
            with self._lock:
                p.pages.append(tracked)
                for child in children:
                    cid = f"{p.bucket}/{child}"
                    if cid not in self._prefixes:
                        c = _Prefix(p.bucket, child, p.depth + 1, None)
                        self._prefixes[cid] = c
                        tasks.put(c)
            self.stats.listed += len(entries)
            for entry in entries:
                if not self._put(items, _Item(prefix=p, page=tracked, **entry)):
                    return
            with self._lock:
                tracked.closed = True
                if next_marker is None:
                    p.listing_done = True
                self._advance(p)
            if next_marker is None:
                return
            marker = next_marker

    def _list_page(
        self, p: _Prefix, delimited: bool, marker: dict[str, str]
    ) -> tuple[list[dict[str, Any]], list[str], dict[str, str] | None]:
        kwargs: dict[str, Any] = {"Bucket": p.bucket, "Prefix": p.prefix, **marker}
        if delimited:
            kwargs["Delimiter"] = "/"
        if self.request_payer:
            kwargs["RequestPayer"] = "requester"
        if self.all_versions:
            resp = self._call_with_retries(self.client.list_object_versions, MaxKeys=self.page_size, **kwargs)
            entries = [
                {
                    "bucket": p.bucket,
                    "key": v["Key"],
                    "version_id": v.get("VersionId"),
                    "size": v.get("Size"),
                    "storage_class": v.get("StorageClass"),
                    "etag": v.get("ETag"),
                    "is_latest": v.get("IsLatest"),
                }
                for v in resp.get("Versions", [])
            ]
            nxt = (
                {"KeyMarker": resp["NextKeyMarker"], "VersionIdMarker": resp.get("NextVersionIdMarker", "")}
                if resp.get("IsTruncated")
                else None
            )
            if nxt is not None and not nxt["VersionIdMarker"]:
                del nxt["VersionIdMarker"]
        else:
            resp = self._call_with_retries(self.client.list_objects_v2, MaxKeys=self.page_size, **kwargs)
            entries = [
                {
                    "bucket": p.bucket,
                    "key": o["Key"],
                    "version_id": None,
                    "size": o.get("Size"),
                    "storage_class": o.get("StorageClass"),
                    "etag": o.get("ETag"),
                    "is_latest": True,
                }
                for o in resp.get("Contents", [])
            ]
            nxt = None
            if resp.get("IsTruncated"):
                last = [e["key"] for e in entries[-1:]] + [c["Prefix"] for c in resp.get("CommonPrefixes", [])[-1:]]
                nxt = {"StartAfter": max(last)} if last else None
        children = [c["Prefix"] for c in resp.get("CommonPrefixes", [])] if delimited else []
        return entries, children, nxt

    def _call_with_retries(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        attempt = 0
        while True:
            try:
                return fn(**kwargs)
            except (ClientError, BotoCoreError) as e:
                kind = error_kind(e)
                if kind not in ("throttle", "transient") or attempt + 1 >= self.max_attempts:
                    raise
                if kind == "throttle":
                    self.stats.throttled += 1
                    self.limit.on_throttle()
                self.stats.retries += 1
                self._sleep(backoff_delay(attempt))
                attempt += 1

    def _header(self, items: queue.Queue[_Item | object], out: queue.Queue[Any]) -> None:
        while True:
            try:
                item = items.get(timeout=_POLL)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if item is _DONE:
                self._put(out, _DONE)
                return
            assert isinstance(item, _Item)
            try:
                record = self.inspect(item)
            except Exception as e:  # no key is ever dropped: report it
                record = _failed(item, f"{type(e).__name__}: {e}", "unexpected error while inspecting")
            if not self._put(out, (record, item)):
                return

    # -- one object ---------------------------------------------------------------------

    def _head(self, params: dict[str, Any]) -> dict[str, Any]:
        """HeadObject under the adaptive limit, retrying throttles and transient errors."""
        attempt = 0
        while True:
            self.limit.acquire()
            try:
                resp: dict[str, Any] = self.client.head_object(**params)
            except (ClientError, BotoCoreError) as e:
                kind = error_kind(e)
                if kind == "throttle":
                    self.stats.throttled += 1
                    self.limit.on_throttle()
                if kind not in ("throttle", "transient") or attempt + 1 >= self.max_attempts:
                    raise
            else:
                self.limit.on_success()
                return resp
            finally:
                self.limit.release()
            self.stats.retries += 1
            self._sleep(backoff_delay(attempt))
            attempt += 1

    def recheck(self, record: ScanRecord) -> ScanRecord:
        """Inspect one object again with HeadObject (e.g. an inventory row)."""
        p = _Prefix(record.bucket, "", 0, None)
        item = _Item(
            record.bucket,
            record.key,
            record.version_id,
            record.size,
            record.storage_class,
            record.etag,
            record.is_latest,
            p,
            _Page(remaining=1, marker=None),
        )
        try:
            return self.inspect(item)
        except Exception as e:  # no key is ever dropped: report it
            return _failed(item, f"{type(e).__name__}: {e}", "unexpected error while inspecting")

    def inspect(self, item: _Item) -> ScanRecord:
        params: dict[str, Any] = {"Bucket": item.bucket, "Key": item.key}
        if item.version_id is not None:
            params["VersionId"] = item.version_id
        if self.request_payer:
            params["RequestPayer"] = "requester"
        try:
            required: Encryption | None = self.classifier.required(item.bucket, item.key)
            lookup_error: str | None = None
        except BucketEncryptionLookupError as e:
            required, lookup_error = None, str(e)
        try:
            head = self._head(params)
        except (ClientError, BotoCoreError) as e:
            kind = error_kind(e)
            if kind == "bad-request" and "SSECustomerKey" not in params:
                # S3 answers HEAD on an SSE-C object without its key with a bare 400.
                if isinstance(required, SSEC):
                    return self._inspect_sse_c(item, params, required)
                return self._record(item, {}, Observed("SSE-C"), required, lookup_error)
            if kind == "not-found":
                return _failed(item, "NotFound", "deleted since it was listed")
            return _failed(item, error_text(e), f"HeadObject failed ({kind})")
        return self._record(item, head, observe_head(head), required, lookup_error)

    def _inspect_sse_c(self, item: _Item, params: dict[str, Any], required: SSEC) -> ScanRecord:
        try:
            head = self._head({**params, **sse_c_params(required)})
        except (ClientError, BotoCoreError) as e:
            if error_kind(e) in ("denied", "bad-request"):
                return self._record(item, {}, Observed("SSE-C"), required, None)
            return _failed(item, error_text(e), "HeadObject with the policy's SSE-C key failed")
        obs = observe_head(head)
        return self._record(item, head, obs, required, None)

    def _record(
        self,
        item: _Item,
        head: dict[str, Any],
        obs: Observed,
        required: Encryption | None,
        lookup_error: str | None,
    ) -> ScanRecord:
        if required is None:
            compliant: bool | None = None
            reason = lookup_error or "the required encryption is unknown"
            error: str | None = "BucketEncryptionLookupError"
        else:
            shortfall = self.classifier.judge(required, obs)
            compliant = shortfall is None
            reason = shortfall or f"meets {required.describe()}"
            error = None
        return ScanRecord(
            bucket=item.bucket,
            key=item.key,
            version_id=head.get("VersionId") or item.version_id,
            size=head.get("ContentLength", item.size),
            storage_class=head.get("StorageClass") or item.storage_class or "STANDARD",
            encryption=obs.encryption,
            kms_key_id=self.classifier.key_arn(obs.kms_key_id),
            bucket_key=obs.bucket_key,
            client_side_format=obs.client_side_format,
            object_lock=object_lock_of(head),
            compliant=compliant,
            reason=reason,
            error=error,
            etag=head.get("ETag") or item.etag,
            is_latest=item.is_latest,
        )


def object_lock_of(head: dict[str, Any]) -> dict[str, Any] | None:
    mode = head.get("ObjectLockMode")
    until = head.get("ObjectLockRetainUntilDate")
    hold = head.get("ObjectLockLegalHoldStatus")
    if mode is None and until is None and hold is None:
        return None
    return {
        "mode": mode,
        "retain_until": until.isoformat() if until is not None and hasattr(until, "isoformat") else until,
        "legal_hold": hold,
    }


def _failed(item: _Item, error: str, reason: str) -> ScanRecord:
    return ScanRecord.failed(
        item.bucket,
        item.key,
        item.version_id,
        error=error,
        reason=reason,
        size=item.size,
        storage_class=item.storage_class,
        is_latest=item.is_latest,
    )


def scan(
    client: Any,
    targets: Iterable[ScanTarget | str],
    *,
    policy: Policy | None = None,
    kms_client: Any = None,
    **options: Any,
) -> Iterator[ScanRecord]:
    """Scan ``targets`` (``s3://bucket[/prefix]``) against ``policy``; yield records.

    KMS aliases in the policy are resolved to ARNs once, through ``kms_client`` (made
    from the S3 client's credentials and endpoint settings when not given).
    """
    classifier = make_classifier(client, policy or Policy.discover(), kms_client=kms_client)
    return Scanner(client, classifier=classifier, **options).scan(targets)


def make_classifier(client: Any, policy: Policy, *, kms_client: Any = None) -> Classifier:
    """A Classifier whose policy has its KMS aliases resolved to ARNs."""
    from ..guard import KmsKeyResolver

    def factory() -> Any:
        if kms_client is not None:
            return kms_client
        import boto3

        creds = client._get_credentials()
        kwargs: dict[str, Any] = {"region_name": client.meta.region_name}
        if creds is not None:
            frozen = creds.get_frozen_credentials()
            kwargs.update(
                aws_access_key_id=frozen.access_key,
                aws_secret_access_key=frozen.secret_key,
                aws_session_token=frozen.token,
            )
        return boto3.session.Session().client("kms", **kwargs)

    resolver = KmsKeyResolver(factory)
    ids = policy.kms_key_ids_to_resolve()
    if ids:
        policy = policy.with_kms_key_arns({k: resolver.resolve(k) for k in sorted(ids)})
    return Classifier(policy, s3_client=client, same_key=resolver.same_key, resolve_key=resolver.resolve)


def make_s3_client(
    session: Any,
    *,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    max_pool_connections: int = 128,
    retries: int = 2,
) -> Any:
    """A plain S3 client sized for the scanner: a wide connection pool, few own retries."""
    from botocore.config import Config

    config = Config(
        max_pool_connections=max_pool_connections,
        retries={"mode": "standard", "total_max_attempts": retries},
    )
    return session.client("s3", endpoint_url=endpoint_url, region_name=region_name, config=config)


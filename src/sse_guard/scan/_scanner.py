"""Listing pipelined with concurrent HeadObject calls; a flat-memory iterator of records.

Shape: listing threads take prefixes from a work queue and put one item per object (or
version) into a bounded queue as soon as each page arrives; HEAD workers drain it under an
``AdaptiveLimit``; records come back through a second bounded queue to the caller's
iterator. Nothing waits for a whole page, and memory does not grow with the bucket.

Prefix fan-out (``fan_out_depth``): a prefix above that depth is listed with
``Delimiter="/"``; its sub-prefixes become new listing tasks that run in parallel.

Worker processes (``processes``): botocore costs about 1 ms of CPU per HeadObject, so one
process tops out near 1,000 HEAD/s. With ``processes=N`` the HEADs run in N worker
processes (``_workers.py``) while this process lists, judges, checkpoints and yields; with
``"auto"`` they start once the listing shows a scan bigger than one page (a small scan
does not pay their start-up). Records are the same either way: both paths fetch with
``HeadRunner`` and build the record here with ``_finish``.

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
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import BucketEncryptionLookupError, ConfigurationError
from ..policy import Policy
from ..settings import SSEC, Encryption, sse_c_params
from ._classify import Classifier, Observed, observe_head
from ._concurrency import AdaptiveLimit, backoff_delay, error_kind, error_text
from ._head import Fetched, HeadRunner
from ._records import ScanRecord
from ._workers import S3ClientSpec, WorkerPool, auto_processes, frozen_credentials

__all__ = ["S3ClientSpec", "ScanStats", "ScanTarget", "Scanner", "parse_s3_url", "scan"]

_POLL = 0.1
# The spec of each client make_s3_client built (its endpoint and profile as given).
_SPECS: weakref.WeakKeyDictionary[Any, S3ClientSpec] = weakref.WeakKeyDictionary()


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
    processes: int = 1  # HEAD worker processes in use (1: HEADs run in this process)

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

    ``processes``: 1 (the default) runs every HEAD in this process's threads; N > 1 runs
    them in N worker processes, each with its own client built from ``client_spec``
    (default: what ``make_s3_client`` recorded, else derived from ``client``) and its own
    adaptive limit; ``workers`` and ``max_workers`` stay totals across them. ``"auto"``
    starts ``auto_processes()`` workers once the listing shows more than one page, and
    none for a small scan. Worker processes use the 'spawn' start method: a script that
    scans must guard its entry point with ``if __name__ == "__main__":``, and they cannot
    reach an in-process mock (moto's ``mock_aws``); event handlers registered on
    ``client`` do not reach them (``S3ClientSpec.setup`` does).
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
        processes: int | Literal["auto"] = 1,
        client_spec: S3ClientSpec | None = None,
    ) -> None:
        if processes != "auto" and (not isinstance(processes, int) or processes < 1):
            raise ConfigurationError(f"processes: expected a positive number or 'auto', got {processes!r}")
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
        self.processes = processes
        self.client_spec = client_spec
        self.pool: WorkerPool | None = None  # the worker processes of the last scan, if any
        self._runner = HeadRunner(client, self.limit, self.stats, max_attempts=max_attempts, sleep=sleep)
        self._lock = threading.Lock()
        self._prefixes: dict[str, _Prefix] = {}
        self._stop = threading.Event()
        self._big = threading.Event()  # a listing ran past one page
        self._listed_all = threading.Event()
        self._retire = threading.Event()  # the worker processes take over from the HEAD threads

    # -- public -------------------------------------------------------------------------

    def scan(self, targets: Iterable[ScanTarget | str]) -> Iterator[ScanRecord]:
        """Yield records as objects are inspected (not in listing order)."""
        tasks: queue.Queue[_Prefix | None] = queue.Queue()
        items: queue.Queue[_Item | object] = queue.Queue(maxsize=self.max_workers * 4)
        out: queue.Queue[tuple[ScanRecord, _Item | None] | object] = queue.Queue(
            maxsize=self.max_workers * 4
        )
        self.stats = ScanStats(concurrency=self.limit.limit)
        self._runner.counters = self.stats
        self._stop = threading.Event()
        self._big, self._listed_all, self._retire = threading.Event(), threading.Event(), threading.Event()
        self.pool = None
        # HEAD threads here from the start; with processes, a feeder that takes over from
        # them once the worker processes are up (so their start-up costs no time).
        self._consumers = self.max_workers + (0 if self.processes == 1 else 1)
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
        if self.processes != 1:
            threads.append(threading.Thread(target=self._feeder, args=(items, out), daemon=True, name="sse-guard-feeder"))
        threads.append(
            threading.Thread(target=self._closer, args=(tasks, items), daemon=True, name="sse-guard-closer")
        )
        for t in threads:
            t.start()
        finished = 0
        last_checkpoint = time.monotonic()
        try:
            while finished < self._consumers:
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
                self.stats.concurrency = self.pool.concurrency if self._retire.is_set() and self.pool else self.limit.limit
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
            if self.pool is not None:
                self.pool.close()
            if self.state_file is not None and finished < self._consumers:
                self.checkpoint()  # interrupted: keep what was delivered

    def _want_processes(self) -> int:
        """How many worker processes this scan gets (waits for the listing to tell, for auto)."""
        if self.processes != "auto":
            return self.processes
        while not self._stop.is_set():
            if self._big.wait(_POLL):
                return auto_processes()
            if self._listed_all.is_set():
                return 1
        return 1

    def _make_pool(self, processes: int, out: queue.Queue[Any]) -> WorkerPool:
        spec = self.client_spec or _SPECS.get(self.client) or S3ClientSpec.from_client(self.client)

        def on_result(token: Any, fetched: Fetched) -> None:
            item, required, lookup_error = token
            try:
                record = self._finish(item, fetched, required, lookup_error)
            except Exception as e:  # no key is ever dropped: report it
                record = _failed(item, f"{type(e).__name__}: {e}", "unexpected error while inspecting")
            self._put(out, (record, item))

        def on_stats(throttled: int, retries: int) -> None:
            self.stats.throttled += throttled
            self.stats.retries += retries

        return WorkerPool(
            spec,
            lambda: frozen_credentials(self.client),
            on_result,
            processes=processes,
            workers=self.limit.limit,
            max_workers=self.max_workers,
            max_attempts=self.max_attempts,
            on_stats=on_stats,
        )

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
        self._listed_all.set()
        for _ in range(self._consumers):
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
            if next_marker is not None or self.stats.listed >= 2 * self.page_size:
                self._big.set()
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
            if self._retire.is_set():  # the worker processes have taken over
                self._put(out, _DONE)
                return
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

    def _feeder(self, items: queue.Queue[_Item | object], out: queue.Queue[Any]) -> None:
        """Starts the worker processes and, once they are up, hands them the listed keys
        instead of the HEAD threads; one _DONE once every result is back."""
        n = self._want_processes()
        pool = None
        if n > 1 and not self._stop.is_set():
            pool = self._make_pool(n, out)
            try:
                pool.start()
            except Exception:  # processes cannot be started here: the HEAD threads go on
                pool.close(timeout=1.0)
                pool = None
        self.pool = pool
        if pool is not None and self._stop.is_set():  # the scan ended while they started
            pool.close(timeout=1.0)
            return
        if pool is None or not pool.wait_ready(self._stop):
            self._put(out, _DONE)  # the HEAD threads do the whole scan
            return
        self.stats.processes = pool.processes
        self._retire.set()
        while True:
            try:
                item = items.get(timeout=_POLL)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if item is _DONE:
                if pool.drain(self._stop):
                    self._put(out, _DONE)
                return
            assert isinstance(item, _Item)
            if not pool.wait_for_room(self._stop):
                return
            required, lookup_error = self._required(item)
            sse_c = sse_c_params(required) if isinstance(required, SSEC) else None
            pool.submit((item, required, lookup_error), self._params(item), sse_c)

    # -- one object ---------------------------------------------------------------------

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
        required, lookup_error = self._required(item)
        sse_c = sse_c_params(required) if isinstance(required, SSEC) else None
        fetched = self._runner.fetch(self._params(item), sse_c)
        return self._finish(item, fetched, required, lookup_error)

    def _params(self, item: _Item) -> dict[str, Any]:
        params: dict[str, Any] = {"Bucket": item.bucket, "Key": item.key}
        if item.version_id is not None:
            params["VersionId"] = item.version_id
        if self.request_payer:
            params["RequestPayer"] = "requester"
        return params

    def _required(self, item: _Item) -> tuple[Encryption | None, str | None]:
        try:
            return self.classifier.required(item.bucket, item.key), None
        except BucketEncryptionLookupError as e:
            return None, str(e)

    def _finish(self, item: _Item, fetched: Fetched, required: Encryption | None, lookup_error: str | None) -> ScanRecord:
        if fetched.error is not None:
            return _failed(item, fetched.error, fetched.reason or "HeadObject failed")
        if fetched.head is None:  # an SSE-C object its key does not open (or no key given)
            return self._record(item, {}, Observed("SSE-C"), required, lookup_error)
        return self._record(item, fetched.head, observe_head(fetched.head), required, lookup_error)

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
    from ..guard import KmsKeyResolver, kms_client_for

    def factory() -> Any:
        return kms_client if kms_client is not None else kms_client_for(client)

    resolver = KmsKeyResolver(factory)
    ids = policy.kms_key_ids_to_resolve()
    if ids:
        policy = policy.with_kms_key_arns({k: resolver.resolve(k) for k in sorted(ids)})
    return Classifier(policy, s3_client=client, same_key=resolver.same_key, resolve_key=resolver.resolve)


def _explicit_profile(session: Any) -> str | None:
    name = getattr(session, "profile_name", None)
    try:
        return name if name in session.available_profiles else None
    except Exception:
        return None


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
    client = session.client("s3", endpoint_url=endpoint_url, region_name=region_name, config=config)
    _SPECS[client] = S3ClientSpec(
        region_name=client.meta.region_name,
        endpoint_url=endpoint_url,
        profile_name=_explicit_profile(session),
        config=config,
    )
    return client


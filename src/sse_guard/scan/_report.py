"""Summaries for people and writers for machines (table, json, jsonl, csv)."""

from __future__ import annotations

import csv
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from ._records import CLASSES, RECORD_KEYS, ScanRecord

__all__ = ["FORMATS", "Progress", "Summary", "make_writer"]

FORMATS = ("table", "json", "jsonl", "csv")
_MAX_PREFIXES = 10_000  # bounded: memory stays flat however many prefixes there are


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


@dataclass
class Summary:
    """Counts and bytes by class, findings, errors, and the prefixes with most findings."""

    objects: int = 0
    findings: int = 0
    errors: int = 0
    vanished: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    finding_bytes: int = 0
    prefixes: Counter[str] = field(default_factory=Counter)

    def add(self, r: ScanRecord) -> None:
        self.objects += 1
        if r.error == "NotFound":
            self.vanished += 1
            return
        if r.is_error:
            self.errors += 1
            return
        cls = r.encryption or "UNKNOWN"
        self.counts[cls] += 1
        self.bytes[cls] += r.size or 0
        if r.is_finding:
            self.findings += 1
            self.finding_bytes += r.size or 0
            head = r.key.split("/", 1)[0] + "/" if "/" in r.key else "(top level)"
            name = f"s3://{r.bucket}/{head}" if head != "(top level)" else f"s3://{r.bucket}/ (top level)"
            if name in self.prefixes or len(self.prefixes) < _MAX_PREFIXES:
                self.prefixes[name] += 1
            else:
                self.prefixes["(other prefixes)"] += 1

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        return 1 if self.findings else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "findings": self.findings,
            "errors": self.errors,
            "vanished": self.vanished,
            "by_class": {c: {"objects": self.counts[c], "bytes": self.bytes[c]} for c in self.counts},
            "worst_prefixes": [{"prefix": p, "findings": n} for p, n in self.prefixes.most_common(10)],
        }

    def render(self) -> str:
        lines = [f"{self.objects} objects inspected: {self.findings} findings ({_size(self.finding_bytes)}), {self.errors} errors"]
        if self.vanished:
            lines[0] += f", {self.vanished} deleted while scanning"
        lines.append("")
        lines.append(f"  {'class':<12} {'objects':>10} {'bytes':>12}")
        for c in [*CLASSES, *sorted(set(self.counts) - set(CLASSES))]:
            if self.counts[c]:
                lines.append(f"  {c:<12} {self.counts[c]:>10} {_size(self.bytes[c]):>12}")
        if self.prefixes:
            lines.append("")
            lines.append("  prefixes with the most findings:")
            for p, n in self.prefixes.most_common(5):
                lines.append(f"  {n:>10}  {p}")
        return "\n".join(lines)


class Progress:
    """A live line on stderr: objects/s and findings so far (throttled to 4 per second)."""

    def __init__(self, stats: Callable[[], tuple[int, int, int, float]], stream: IO[str] | None = None) -> None:
        self._stats = stats
        self._stream = stream if stream is not None else sys.stderr
        self._last = 0.0

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.25:
            return
        self._last = now
        inspected, findings, errors, rate = self._stats()
        self._stream.write(f"\r{inspected} inspected, {rate:,.0f}/s, {findings} findings, {errors} errors ")
        self._stream.flush()

    def done(self) -> None:
        self.tick(force=True)
        self._stream.write("\n")
        self._stream.flush()


def _flat(r: ScanRecord) -> list[Any]:
    d = r.to_dict()
    out = []
    for k in (*RECORD_KEYS, "error"):
        v = d.get(k)
        out.append(json.dumps(v, sort_keys=True) if isinstance(v, dict) else ("" if v is None else v))
    return out


class _Writer:
    def __init__(self, stream: IO[str], *, only_findings: bool = False) -> None:
        self.stream = stream
        self.only_findings = only_findings

    def write(self, r: ScanRecord) -> None:
        raise NotImplementedError

    def close(self, summary: Summary) -> None:
        pass


class _Jsonl(_Writer):
    def write(self, r: ScanRecord) -> None:
        self.stream.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")


class _Json(_Writer):
    """One JSON document, streamed: ``{"records": [...], "summary": {...}}``."""

    def __init__(self, stream: IO[str], **kw: Any) -> None:
        super().__init__(stream, **kw)
        self.first = True
        stream.write('{"records": [')

    def write(self, r: ScanRecord) -> None:
        self.stream.write(("\n  " if self.first else ",\n  ") + json.dumps(r.to_dict(), ensure_ascii=False))
        self.first = False

    def close(self, summary: Summary) -> None:
        self.stream.write('\n], "summary": ' + json.dumps(summary.to_dict()) + "}\n")


class _Csv(_Writer):
    def __init__(self, stream: IO[str], **kw: Any) -> None:
        super().__init__(stream, **kw)
        self.w = csv.writer(stream)
        self.w.writerow([*RECORD_KEYS, "error"])

    def write(self, r: ScanRecord) -> None:
        self.w.writerow(_flat(r))


class _Table(_Writer):
    """For people: one line per finding or error, then the summary."""

    def write(self, r: ScanRecord) -> None:
        if r.compliant:
            return
        tag = "ERROR" if r.is_error else r.encryption or "?"
        version = f" (version {r.version_id})" if r.version_id and r.is_latest is False else ""
        self.stream.write(f"{tag:<12} s3://{r.bucket}/{r.key}{version}: {r.reason}\n")

    def close(self, summary: Summary) -> None:
        self.stream.write(("\n" if summary.findings or summary.errors else "") + summary.render() + "\n")


def make_writer(fmt: str, stream: IO[str]) -> _Writer:
    writers: dict[str, Callable[[IO[str]], _Writer]] = {"table": _Table, "json": _Json, "jsonl": _Jsonl, "csv": _Csv}
    return writers[fmt](stream)

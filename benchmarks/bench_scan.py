"""Scanner and inventory throughput. Not a test; run it:

    .venv/bin/python benchmarks/bench_scan.py            # about a minute
    .venv/bin/python benchmarks/bench_scan.py --objects 5000 --latency-ms 20

1. A small S3 stand-in (a threaded http.server in a child process on 127.0.0.1) answers
   ListObjectsV2, GetBucketEncryption and HeadObject, each after a fixed added latency.
   It is fast enough not to be the bottleneck (moto server answers ~200 HEAD/s). The
   scanner runs as `sse-guard scan` runs it by default (make_s3_client, 32 HEADs in flight
   growing to 128, --processes auto: HEAD worker processes once the listing passes a page);
   its objects/s is compared with a sequential list-then-HEAD loop in the same run.
   Target: >= 25x at 20 ms. The stand-in shares the CPUs with the scanner: on a 2-CPU
   machine that is loaded by other work, the ratio moves with the load average (printed).
2. Inventory mode: rows/s over a generated gzipped CSV (target >= 200,000 rows/s), and
   peak traced memory for 10,000 vs 1,000,000 rows (target: the same).
"""

from __future__ import annotations

import argparse
import bisect
import csv
import gzip
import multiprocessing
import os
import sys
import tempfile
import time
import tracemalloc
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"


def _serve(port_out: Any, objects: int, latency: float) -> None:
    keys = [f"data/obj-{i:07d}" for i in range(objects)]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            time.sleep(latency)
            url = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(url.query, keep_blank_values=True)
            if "encryption" in q:
                body = (
                    f'<ServerSideEncryptionConfiguration xmlns="{_XMLNS}"><Rule><ApplyServerSideEncryptionByDefault>'
                    "<SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule>"
                    "</ServerSideEncryptionConfiguration>"
                ).encode()
                return self._send(200, body, {"Content-Type": "application/xml"})
            start = int(q.get("continuation-token", ["0"])[0])
            if "start-after" in q:  # the scanner resumes pages with StartAfter (checkpointable)
                start = max(start, bisect.bisect_right(keys, q["start-after"][0]))
            size = int(q.get("max-keys", ["1000"])[0])
            page = keys[start : start + size]
            truncated = start + size < len(keys)
            items = "".join(
                f"<Contents><Key>{k}</Key><Size>1024</Size><ETag>&quot;abc&quot;</ETag><StorageClass>STANDARD</StorageClass></Contents>"
                for k in page
            )
            body = (
                f'<ListBucketResult xmlns="{_XMLNS}"><Name>bench</Name><Prefix></Prefix><KeyCount>{len(page)}</KeyCount>'
                f"<MaxKeys>{size}</MaxKeys><IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{items}"
                + (f"<NextContinuationToken>{start + size}</NextContinuationToken>" if truncated else "")
                + "</ListBucketResult>"
            ).encode()
            self._send(200, body, {"Content-Type": "application/xml"})

        def do_HEAD(self) -> None:
            time.sleep(latency)
            n = int(self.path.rsplit("-", 1)[-1])
            headers = {"Content-Length": "1024", "ETag": '"abc"', "Last-Modified": "Wed, 01 Jan 2025 00:00:00 GMT"}
            if n % 3:
                headers["x-amz-server-side-encryption"] = "AES256"
            self._send(200, b"", headers)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024  # the listen backlog: 128 clients connect at once

    server = Server(("127.0.0.1", 0), Handler)
    port_out.send(server.server_address[1])
    server.serve_forever()


def _client(port: int, pool: int) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1").client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        config=Config(max_pool_connections=pool, retries={"mode": "standard", "total_max_attempts": 2}, s3={"addressing_style": "path"}),
    )


def bench_scan(
    objects: int,
    latency_ms: float,
    workers: int,
    max_workers: int,
    processes: int | str,
    sequential_objects: int,
) -> float:
    import boto3

    from sse_guard.policy import Policy
    from sse_guard.scan import Scanner, make_classifier, make_s3_client

    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=_serve, args=(child, objects, latency_ms / 1000), daemon=True)
    proc.start()
    port = parent.recv()
    try:
        s3 = _client(port, 10)
        # Sequential: list a page, HEAD each key in turn.
        t0 = time.perf_counter()
        done = 0
        token: dict[str, str] = {}
        while done < sequential_objects:
            page = s3.list_objects_v2(Bucket="bench", MaxKeys=1000, **token)
            for o in page["Contents"]:
                s3.head_object(Bucket="bench", Key=o["Key"])
                done += 1
                if done >= sequential_objects:
                    break
            if not page.get("IsTruncated"):
                break
            token = {"ContinuationToken": page["NextContinuationToken"]}
        seq = done / (time.perf_counter() - t0)

        # The scanner as the CLI builds it (sse_guard.cli._Env and _records), with its defaults.
        session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")
        s3 = make_s3_client(session, endpoint_url=f"http://127.0.0.1:{port}", max_pool_connections=max_workers)
        classifier = make_classifier(s3, Policy(), kms_client=object())
        scanner = Scanner(s3, classifier=classifier, workers=workers, max_workers=max_workers, processes=processes)
        t0 = time.perf_counter()
        n = findings = 0
        keys = set()
        for rec in scanner.scan(["s3://bench"]):
            n += 1
            findings += rec.is_finding
            keys.add(rec.key)
        par = n / (time.perf_counter() - t0)
        assert n == objects == len(keys) and findings == (objects + 2) // 3, (n, findings)
        assert scanner.stats.errors == 0
        print(f"scan, {latency_ms:.0f} ms per request: sequential list-then-HEAD {seq:,.0f} objects/s ({sequential_objects} objects)")
        print(
            f"scan, {latency_ms:.0f} ms per request: sse-guard scanner     {par:,.0f} objects/s ({objects} objects, "
            f"{workers}->{max_workers} in flight, processes={processes} -> {scanner.stats.processes})"
        )
        ratio = par / seq
        print(f"scan ratio: {ratio:.1f}x (target >= 25x)")
        return ratio
    finally:
        proc.terminate()
        proc.join()


def _inventory_file(path: str, rows: int) -> None:
    statuses = ("SSE-S3", "NOT-SSE", "SSE-KMS", "SSE-S3")
    with gzip.open(path, "wt", encoding="utf-8", newline="", compresslevel=1) as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        for i in range(rows):
            key = f"logs/2025/{i % 97:02d}/file%20{i:08d}.gz" if i % 10 == 0 else f"logs/2025/{i % 97:02d}/file-{i:08d}.gz"
            w.writerow(["bench", key, "1024", "STANDARD", "etag", statuses[i % 4], "DISABLED"])


def _read_all(path: str) -> int:
    from sse_guard.policy import Policy
    from sse_guard.scan import Classifier, InventoryReader
    from sse_guard.settings import SSES3

    reader = InventoryReader(Classifier(Policy(default=SSES3()), s3_client=None))
    columns = ("Bucket", "Key", "Size", "StorageClass", "ETag", "EncryptionStatus", "BucketKeyStatus")
    n = 0
    with open(path, "rb") as f:
        for _ in reader.csv_records(f, columns, source_bucket="bench"):
            n += 1
    return n


def bench_inventory(big: int, small: int) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        small_path, big_path = os.path.join(tmp, "small.csv.gz"), os.path.join(tmp, "big.csv.gz")
        _inventory_file(small_path, small)
        _inventory_file(big_path, big)
        t0 = time.perf_counter()
        assert _read_all(big_path) == big
        rate = big / (time.perf_counter() - t0)
        peaks = []
        for path, n in ((small_path, small), (big_path, big)):
            tracemalloc.start()
            assert _read_all(path) == n
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
    print(f"inventory: {rate:,.0f} rows/s over {big:,} gzipped CSV rows (target >= 200,000)")
    print(f"inventory peak traced memory: {peaks[0] / 1024:,.0f} KiB for {small:,} rows, {peaks[1] / 1024:,.0f} KiB for {big:,} rows")
    return rate, peaks[0], peaks[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objects", type=int, default=20000)
    p.add_argument("--sequential-objects", type=int, default=300)
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--workers", type=int, default=32, help="as the CLI's --workers (default 32)")
    p.add_argument("--max-workers", type=int, default=128, help="as the CLI's --max-workers (default 128)")
    p.add_argument("--processes", default="auto", help="as the CLI's --processes (default auto)")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--small-rows", type=int, default=10_000)
    p.add_argument("--skip-inventory", action="store_true")
    p.add_argument("--skip-scan", action="store_true")
    args = p.parse_args()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if not args.skip_scan:
        processes = args.processes if args.processes == "auto" else int(args.processes)
        bench_scan(args.objects, args.latency_ms, args.workers, args.max_workers, processes, args.sequential_objects)
    if not args.skip_inventory:
        bench_inventory(args.rows, args.small_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

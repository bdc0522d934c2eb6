"""CPU cost of the guard on put_object, with the HTTP layer answered in-process.

Run: .venv/bin/python benchmarks/bench_guard.py [--rounds 15] [--calls 2000]

Compares a guarded client on a warm cache against an unguarded client that passes the
same SSE parameters by hand; rounds alternate so drift on a shared machine hits both.
Prints the median ratio (target <= 1.03), the cost of a cold-bucket write, and shows
that 32 concurrent cold writes make one GetBucketEncryption.

--callgrind also counts instructions under valgrind (about two minutes): the
per-call difference between a short and a long run of each side, which the machine's
load cannot move, where the CPU-time ratio on a busy shared machine can.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

import sse_guard
from sse_guard import Policy

KEY = "arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555"
ENCRYPTION_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?><ServerSideEncryptionConfiguration><Rule>'
    b"<ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm>"
    b"<KMSMasterKeyID>" + KEY.encode() + b"</KMSMasterKeyID></ApplyServerSideEncryptionByDefault>"
    b"<BucketKeyEnabled>true</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>"
)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **kwargs: Any) -> Any:
        yield self._body


class Answerer:
    """Answers every S3 request in-process, like S3 would, and counts lookups."""

    def __init__(self, latency: float = 0.0) -> None:
        self.lookups = 0
        self.latency = latency
        self._lock = threading.Lock()

    def __call__(self, request: Any, event_name: str, **kwargs: Any) -> AWSResponse:
        if event_name.endswith("GetBucketEncryption"):
            with self._lock:
                self.lookups += 1
            if self.latency:
                time.sleep(self.latency)
            return AWSResponse(request.url, 200, {}, _Raw(ENCRYPTION_XML))
        return AWSResponse(request.url, 200, {"ETag": '"abc"'}, _Raw(b""))


def client(answerer: Answerer) -> Any:
    s3 = boto3.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1").client("s3")
    s3.meta.events.register("before-send.s3", answerer)
    return s3


def run(s3: Any, calls: int, **params: Any) -> float:
    # A collection landing in one side's round would swamp a few percent of difference.
    gc.collect()
    gc.disable()
    try:
        start = time.process_time()
        for i in range(calls):
            s3.put_object(Bucket="bench-bucket", Key=f"k{i}", Body=b"x", **params)
        return time.process_time() - start
    finally:
        gc.enable()


EXPLICIT = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KEY, "BucketKeyEnabled": True}


def child(mode: str, calls: int) -> None:
    """One side alone, for valgrind: warm up, then ``calls`` puts."""
    s3 = client(Answerer())
    params: dict[str, Any] = dict(EXPLICIT)
    if mode == "guarded":
        sse_guard.register(s3, policy=Policy())
        params = {}
    run(s3, 20, **params)
    run(s3, calls, **params)


def instructions(mode: str, calls: int) -> int:
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, __file__, "--child", mode, "--calls", str(calls)],
        capture_output=True, text=True, check=True,
    )
    match = re.search(r"Collected : (\d+)", result.stderr)
    assert match, result.stderr[-500:]
    return int(match.group(1))


def callgrind_ratio() -> None:
    short, long = 50, 250
    per_call = {}
    for mode in ("plain", "guarded"):
        per_call[mode] = (instructions(mode, long) - instructions(mode, short)) / (long - short)
    ratio = per_call["guarded"] / per_call["plain"]
    print(f"put_object, warm cache: guarded/plain instructions per call {ratio:.3f} "
          f"(callgrind; plain {per_call['plain'] / 1e6:.2f} M, guarded {per_call['guarded'] / 1e6:.2f} M)  target <= 1.03")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=101)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--callgrind", action="store_true", help="also count instructions under valgrind")
    parser.add_argument("--child", choices=("plain", "guarded"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.calls)
        return

    plain = client(Answerer())
    guarded = client(Answerer())
    guard = sse_guard.register(guarded, policy=Policy())
    explicit = EXPLICIT
    run(plain, 200, **explicit)  # warm both: imports, caches, the bucket lookup
    run(guarded, 200)
    ratios = []
    for i in range(args.rounds):
        # alternate which side goes first, so neither always follows the other
        if i % 2:
            mine = run(guarded, args.calls)
            base = run(plain, args.calls, **explicit)
        else:
            base = run(plain, args.calls, **explicit)
            mine = run(guarded, args.calls)
        ratios.append(mine / base)
    per_call_us = base / args.calls * 1e6
    print(f"put_object, warm cache: guarded/plain CPU median ratio {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {args.rounds} rounds x {args.calls} calls; "
          f"plain {per_call_us:.0f} us/call)  target <= 1.03")

    cold_times = []
    for i in range(50):
        guard.invalidate()
        start = time.process_time()
        guarded.put_object(Bucket="bench-bucket", Key=f"cold{i}", Body=b"x")
        cold_times.append(time.process_time() - start)
    print(f"cold-bucket write: {statistics.median(cold_times) * 1e6:.0f} us CPU median "
          f"(= {statistics.median(cold_times) / (base / args.calls):.2f}x a plain put: one GetBucketEncryption more)")

    answerer = Answerer(latency=0.05)
    shared = client(answerer)
    sse_guard.register(shared, policy=Policy())
    barrier = threading.Barrier(32)

    def write(i: int) -> None:
        barrier.wait()
        shared.put_object(Bucket="bench-bucket", Key=f"c{i}", Body=b"x")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"32 concurrent writes to a cold bucket (50 ms lookup latency): {answerer.lookups} GetBucketEncryption")
    if args.callgrind:
        callgrind_ratio()


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    main()

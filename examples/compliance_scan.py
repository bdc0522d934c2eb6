"""A compliance script on the scanner's library API: scan, write a report, exit 1 on findings.

    python examples/compliance_scan.py [REPORT.jsonl]

In production point it at real buckets (drop the moto set-up in ``main``); here it seeds
a moto bucket with a few legacy plaintext objects and one SSE-KMS object under the
wrong key, scans it against a policy that requires key A, writes one JSON line per
object, and exits 1 because there are findings (0 when compliant, 2 on an error).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import boto3

import sse_guard
from sse_guard.scan import ScanRecord, make_s3_client, scan


def run_compliance_scan(policy: sse_guard.Policy, targets: list[str], report: Path) -> int:
    """The script proper: what a compliance pipeline runs on a schedule."""
    client = make_s3_client(boto3.Session())
    counts: Counter[str] = Counter()
    with report.open("w") as out:
        record: ScanRecord
        for record in scan(client, targets, policy=policy):
            out.write(json.dumps(record.to_dict()) + "\n")
            counts["error" if record.error else "compliant" if record.compliant else "finding"] += 1
    print(f"  {sum(counts.values())} objects: {counts['finding']} findings, {counts['error']} errors -> {report}")
    if counts["error"]:
        return 2
    return 1 if counts["finding"] else 0


def seed() -> sse_guard.Policy:
    s3: Any = boto3.client("s3")
    kms: Any = boto3.client("kms")
    key_a = kms.create_key(Description="A")["KeyMetadata"]["Arn"]
    key_b = kms.create_key(Description="B")["KeyMetadata"]["Arn"]
    s3.create_bucket(Bucket="acme-records")
    for i in range(3):
        s3.put_object(Bucket="acme-records", Key=f"2019/legacy-{i}.csv", Body=b"id,amount\n")
    s3.put_object(Bucket="acme-records", Key="2024/ok.csv", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_a)
    s3.put_object(Bucket="acme-records", Key="2024/wrong-key.csv", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_b)
    return sse_guard.Policy.from_dict({"rules": [{"bucket": "acme-records", "algorithm": "aws:kms", "kms_key_id": key_a}]})


def main(argv: list[str]) -> int:
    from moto import mock_aws

    os.environ.update(AWS_ACCESS_KEY_ID="example", AWS_SECRET_ACCESS_KEY="example", AWS_DEFAULT_REGION="us-east-1")
    report = Path(argv[0]) if argv else Path(os.environ.get("TMPDIR", "/tmp")) / "sse-guard-compliance.jsonl"
    print("compliance scan of s3://acme-records:")
    with mock_aws():
        policy = seed()
        status = run_compliance_scan(policy, ["s3://acme-records"], report)
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    findings = sorted(r["key"] for r in rows if not r["compliant"])
    expected = ["2019/legacy-0.csv", "2019/legacy-1.csv", "2019/legacy-2.csv", "2024/wrong-key.csv"]
    if status != 1 or findings != expected:
        print(f"  FAILED: exit {status}, findings {findings}")
        return 3
    print("  [ok] the legacy objects and the wrong-key object are findings; the script exits 1")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

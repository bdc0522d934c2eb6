"""The sse-guard console script: exit codes, formats, and the subcommands end to end."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from sse_guard import cli
from sse_guard.scan import RECORD_KEYS


def seeded(backend: Any) -> tuple[Any, str]:
    s3 = backend.client("s3")
    bucket = backend.bucket("cli")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="legacy/old one.txt", Body=b"x" * 10)
    s3.put_object(Bucket=bucket, Key="new.txt", Body=b"y", ServerSideEncryption="AES256")
    return s3, bucket


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_scan_exits_1_with_findings_and_shows_them_with_a_summary(backend: Any, capsys: Any) -> None:
    _, bucket = seeded(backend)
    code, out, _ = run(capsys, "scan", f"s3://{bucket}", "--no-progress")
    assert code == 1
    assert f"NOT-SSE      s3://{bucket}/legacy/old one.txt: SSE-S3 is required, the object has no encryption" in out
    assert "2 objects inspected: 1 findings" in out
    assert f"s3://{bucket}/legacy/" in out  # the worst prefix


def test_scan_exits_0_when_everything_is_compliant(backend: Any, capsys: Any) -> None:
    _, bucket = seeded(backend)
    code, out, _ = run(capsys, "scan", f"s3://{bucket}/new", "--no-progress")
    assert code == 0 and "1 objects inspected: 0 findings" in out


def test_scan_exits_2_on_error(backend: Any, capsys: Any) -> None:
    code, out, _ = run(capsys, "scan", f"s3://{backend.bucket('nosuch')}", "--format", "jsonl")
    assert code == 2
    assert json.loads(out.splitlines()[0])["error"].startswith("NoSuchBucket")


def test_jsonl_is_one_record_per_object_with_the_contract_keys(backend: Any, capsys: Any) -> None:
    _, bucket = seeded(backend)
    code, out, err = run(capsys, "scan", f"s3://{bucket}", "--format", "jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and len(lines) == 2
    assert all(tuple(line) == RECORD_KEYS for line in lines)
    assert "2 objects inspected" in err  # the summary stays off stdout


def test_json_and_csv_formats_and_output_file(backend: Any, capsys: Any, tmp_path: Path) -> None:
    _, bucket = seeded(backend)
    code, out, _ = run(capsys, "scan", f"s3://{bucket}", "--format", "json")
    doc = json.loads(out)
    assert code == 1 and len(doc["records"]) == 2 and doc["summary"]["findings"] == 1
    target = tmp_path / "scan.csv"
    code, out, _ = run(capsys, "scan", f"s3://{bucket}", "--format", "csv", "--output", str(target))
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert code == 1 and {r["key"] for r in rows} == {"legacy/old one.txt", "new.txt"}
    assert "2 objects inspected" in out


def test_progress_line_goes_to_stderr_when_asked(backend: Any, capsys: Any) -> None:
    _, bucket = seeded(backend)
    _, _, err = run(capsys, "scan", f"s3://{bucket}", "--progress")
    assert "inspected" in err and "/s" in err and "findings" in err


def test_policy_file_decides_what_is_required(backend: Any, capsys: Any, tmp_path: Path) -> None:
    _, bucket = seeded(backend)
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[[rules]]\nbucket = "{bucket}"\nprefix = "legacy/"\nalgorithm = "AES256"\n\n[default]\nalgorithm = "aws:kms"\n')
    code, out, _ = run(capsys, "scan", f"s3://{bucket}", "--policy", str(policy), "--no-progress")
    assert code == 1 and "new.txt" in out and "SSE-KMS (key aws/s3) is required" in out


def test_fix_is_a_dry_run_until_apply_and_then_the_bucket_is_compliant(backend: Any, capsys: Any, tmp_path: Path) -> None:
    s3, bucket = seeded(backend)
    code, out, err = run(capsys, "fix", f"s3://{bucket}")
    assert code == 1 and out.startswith("planned ") and "dry run" in err
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="legacy/old one.txt")
    results = tmp_path / "results.jsonl"
    code, out, err = run(capsys, "fix", f"s3://{bucket}", "--apply", "--results", str(results))
    assert code == 0 and out.startswith("fixed ") and "1 findings: 1 fixed" in err
    assert json.loads(results.read_text())["status"] == "fixed"
    code, _, _ = run(capsys, "scan", f"s3://{bucket}", "--no-progress")
    assert code == 0


def test_fix_from_a_saved_scan(backend: Any, capsys: Any, tmp_path: Path) -> None:
    _, bucket = seeded(backend)
    saved = tmp_path / "scan.jsonl"
    run(capsys, "scan", f"s3://{bucket}", "--format", "jsonl", "--output", str(saved))
    code, out, _ = run(capsys, "fix", "--from-scan", str(saved), "--apply", "--format", "jsonl")
    (result,) = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and result["status"] == "fixed" and result["key"] == "legacy/old one.txt"


def test_batch_operations_dry_run_lists_what_stays_local(backend: Any, capsys: Any) -> None:
    _, bucket = seeded(backend)
    code, out, err = run(
        capsys, "fix", f"s3://{bucket}", "--batch-operations", "--role-arn", "arn:aws:iam::123456789012:role/b",
        "--account-id", "123456789012", "--manifest-url", f"s3://{bucket}/m/", "--report-url", f"s3://{bucket}/r/",
    )
    assert code == 1
    assert "1 objects would go to Batch Operations" in out
    assert "cannot copy conditionally" in err


def test_buckets_audit_and_recommended_policy(backend: Any, capsys: Any) -> None:
    s3, bucket = seeded(backend)
    enc = backend.bucket("enc")
    s3.create_bucket(Bucket=enc)
    s3.put_bucket_encryption(
        Bucket=enc,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}]},
    )
    code, out, _ = run(capsys, "buckets", bucket, enc, "--format", "json")
    reports = {r["bucket"]: r for r in json.loads(out)}
    assert code == 1
    assert reports[bucket]["default_meets_policy"] is False and reports[bucket]["default_encryption"] is None
    assert reports[enc]["default_meets_policy"] is True and reports[enc]["bucket_key"] is True
    code, out, _ = run(capsys, "buckets", "--print-policy", enc)
    doc = json.loads(out)
    assert code == 0 and any(s["Sid"] == "DenyWritesWithoutRequiredEncryption" for s in doc["Statement"])


def test_demo_subcommand_hands_over_to_the_demo_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import sse_guard.demo

    seen: list[list[str]] = []
    monkeypatch.setattr(sse_guard.demo, "main", lambda argv, **kw: seen.append(list(argv)) or 0)
    assert cli.main(["demo", "--fast"]) == 0 and seen == [["--fast"]]

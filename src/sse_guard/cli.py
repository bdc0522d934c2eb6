"""``sse-guard``: scan, fix, buckets, demo. Argument parsing and printing only.

Exit status: 0 compliant (or everything fixed), 1 findings remain, 2 an error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from .errors import SSEGuardError
from .policy import Policy

__all__ = ["main"]


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("AWS and policy")
    g.add_argument("--profile", help="AWS profile (else AWS_PROFILE / the default chain)")
    g.add_argument("--region", help="AWS region (else AWS_REGION / AWS_DEFAULT_REGION)")
    g.add_argument("--endpoint-url", help="S3 endpoint URL (else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)")
    g.add_argument(
        "--policy",
        metavar="FILE",
        help="policy TOML (else SSE_GUARD_POLICY, else [tool.sse-guard] in ./pyproject.toml, else follow each bucket's default)",
    )


def _processes(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number or auto, got {value!r}")
    return n


def _scan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="*", metavar="s3://BUCKET[/PREFIX]")
    p.add_argument("--all-versions", action="store_true", help="inspect every version (ListObjectVersions)")
    p.add_argument("--workers", type=int, default=32, help="HEAD requests in flight to start with (default 32)")
    p.add_argument("--max-workers", type=int, default=128, help="the most it grows to (default 128)")
    p.add_argument(
        "--processes",
        type=_processes,
        default="auto",
        metavar="N|auto",
        help="HEAD worker processes (one process tops out near 1,000 HEAD/s); auto (the default): "
        "up to 4, one per CPU, once the listing shows more than one page; 1: none",
    )
    p.add_argument("--fan-out", type=int, default=0, metavar="DEPTH", help="list sub-prefixes down to DEPTH in parallel")
    p.add_argument("--request-payer", action="store_true", help="send RequestPayer=requester")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sse-guard", description="Find and fix S3 objects that are not encrypted as policy requires.")
    sub = parser.add_subparsers(dest="command", required=True)

    scan = sub.add_parser("scan", help="report each object's encryption against the policy")
    _scan_options(scan)
    scan.add_argument("--inventory", metavar="s3://.../manifest.json", help="read an S3 Inventory report instead of listing")
    scan.add_argument("--verify", action="store_true", help="with --inventory: HEAD the non-compliant rows")
    scan.add_argument("--format", choices=("table", "json", "jsonl", "csv"), default="table")
    scan.add_argument("--output", metavar="FILE", help="write records there (the summary goes to stdout)")
    scan.add_argument("--progress", action="store_true", default=None, help="live progress on stderr (default: when stderr is a terminal)")
    scan.add_argument("--no-progress", dest="progress", action="store_false")
    scan.add_argument("--state", metavar="FILE", help="checkpoint the listing there; resume from it if it exists")
    _common(scan)

    fix = sub.add_parser("fix", help="re-encrypt findings in place (dry run unless --apply)")
    _scan_options(fix)
    fix.add_argument("--from-scan", metavar="FILE", help="fix the findings of a saved `scan --format jsonl` instead of scanning")
    fix.add_argument("--apply", action="store_true", help="really copy (default: a dry run)")
    fix.add_argument("--results", metavar="FILE", help="append one JSON line per result; resume from it")
    fix.add_argument("--restore", action="store_true", help="request a restore of archived objects")
    fix.add_argument("--restore-days", type=int, default=7)
    fix.add_argument("--delete-old-versions", action="store_true", help="delete non-current plaintext versions (refused under object lock)")
    fix.add_argument("--multipart-threshold", type=int, default=5 * 1024**3, metavar="BYTES")
    fix.add_argument("--part-size", type=int, default=512 * 1024**2, metavar="BYTES")
    fix.add_argument("--format", choices=("table", "jsonl"), default="table")
    fix.add_argument("--output", metavar="FILE")
    b = fix.add_argument_group("S3 Batch Operations")
    b.add_argument("--batch-operations", action="store_true", help="submit S3PutObjectCopy jobs instead of copying here")
    b.add_argument("--manifest-generator", action="store_true", help="let S3 generate the manifest (unencrypted objects of each bucket)")
    b.add_argument("--role-arn", help="the role Batch Operations assumes")
    b.add_argument("--account-id", help="default: the caller's (STS)")
    b.add_argument("--manifest-url", metavar="s3://BUCKET/PREFIX", help="where manifests are uploaded")
    b.add_argument("--report-url", metavar="s3://BUCKET/PREFIX", help="where completion reports go")
    b.add_argument("--with-versions", action="store_true", help="name version ids in the manifest")
    _common(fix)

    buckets = sub.add_parser("buckets", help="audit bucket settings against the policy")
    buckets.add_argument("buckets", nargs="*", metavar="BUCKET", help="default: every bucket of the account")
    buckets.add_argument("--print-policy", metavar="BUCKET", help="print a recommended bucket policy for BUCKET")
    buckets.add_argument("--format", choices=("table", "json"), default="table")
    _common(buckets)

    demo = sub.add_parser("demo", help="a guided tour against an in-process moto", add_help=False)
    demo.add_argument("demo_args", nargs=argparse.REMAINDER)
    return parser


class _Env:
    """Clients built the AWS CLI way from the common options."""

    def __init__(self, args: argparse.Namespace, *, pool: int = 16) -> None:
        import boto3

        from .scan import make_classifier, make_s3_client

        self.session = boto3.Session(profile_name=args.profile, region_name=args.region)
        self.s3 = make_s3_client(self.session, endpoint_url=args.endpoint_url, region_name=args.region, max_pool_connections=pool)
        policy = Policy.from_file(args.policy) if args.policy else Policy.discover()
        self.classifier = make_classifier(self.s3, policy, kms_client=self.session.client("kms", region_name=args.region))

    def client(self, service: str) -> Any:
        session: Any = self.session
        return session.client(service, region_name=session.region_name)


@contextlib.contextmanager
def _open_output(path: str | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8", newline="") as f:
        yield f


def _records(args: argparse.Namespace, env: _Env) -> tuple[Iterator[Any], Any]:
    from .scan import Scanner, read_inventory

    scanner = Scanner(
        env.s3,
        classifier=env.classifier,
        all_versions=args.all_versions,
        workers=args.workers,
        max_workers=args.max_workers,
        processes=args.processes,
        fan_out_depth=args.fan_out,
        state_file=getattr(args, "state", None),
        request_payer=args.request_payer,
    )
    if getattr(args, "inventory", None):
        verify = scanner.recheck if args.verify else None
        return read_inventory(env.s3, args.inventory, env.classifier, verify=verify), scanner
    if not args.targets:
        raise SSEGuardError("name at least one s3://bucket[/prefix] (or --inventory)")
    return scanner.scan(args.targets), scanner


def _cmd_scan(args: argparse.Namespace) -> int:
    from .scan._report import Progress, Summary, make_writer

    env = _Env(args, pool=args.max_workers)
    records, scanner = _records(args, env)
    summary = Summary()
    show_progress = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = (
        Progress(lambda: (scanner.stats.inspected, scanner.stats.findings, scanner.stats.errors, scanner.stats.rate()))
        if show_progress
        else None
    )
    with _open_output(args.output) as out:
        writer = make_writer(args.format, out)
        for record in records:
            summary.add(record)
            if not (args.format == "table" and args.output is None and progress is not None and record.compliant):
                writer.write(record)
            if progress is not None:
                progress.tick()
        if progress is not None:
            progress.done()
        if args.format == "table" or args.format == "json":
            writer.close(summary)
    if args.output is not None or args.format in ("jsonl", "csv"):
        stream = sys.stdout if args.output is not None else sys.stderr
        print(summary.render(), file=stream)
    return summary.exit_code


def _saved_findings(path: str) -> Iterator[Any]:
    from .scan import ScanRecord

    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield ScanRecord.from_dict(json.loads(line))


def _cmd_fix(args: argparse.Namespace) -> int:
    from .scan import Fixer

    env = _Env(args, pool=max(args.max_workers, 16))
    if args.from_scan:
        records: Iterator[Any] = _saved_findings(args.from_scan)
    elif args.manifest_generator:
        records = iter(())
    else:
        records, _ = _records(args, env)
    if args.batch_operations:
        return _batch(args, env, records)
    fixer = Fixer(
        env.s3,
        env.classifier,
        apply=args.apply,
        multipart_threshold=args.multipart_threshold,
        part_size=args.part_size,
        request_payer=args.request_payer,
        restore=args.restore,
        restore_days=args.restore_days,
        delete_old_versions=args.delete_old_versions,
        results_file=args.results,
    )
    counts: Counter[str] = Counter()
    with _open_output(args.output) as out:
        for result in fixer.fix(records):
            counts[result.status] += 1
            if args.format == "jsonl":
                out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
            else:
                version = f" (version {result.version_id})" if result.version_id else ""
                out.write(f"{result.status:<8} s3://{result.bucket}/{result.key}{version}: {result.reason}\n")
    total = sum(counts.values())
    line = f"{total} findings: " + ", ".join(f"{counts[s]} {s}" for s in ("fixed", "planned", "skipped", "failed"))
    if not args.apply:
        line += " (dry run: nothing was changed; --apply to copy)"
    print(line, file=sys.stdout if args.output else sys.stderr)
    if counts["failed"]:
        return 2
    return 1 if counts["skipped"] or counts["planned"] else 0


def _batch(args: argparse.Namespace, env: _Env, records: Iterator[Any]) -> int:
    from .scan import BATCH_LIMITS, plan_batch, submit_batch, submit_generated_batch
    from .scan._scanner import parse_s3_url

    if not args.role_arn or not args.report_url or not (args.manifest_url or args.manifest_generator):
        raise SSEGuardError("--batch-operations needs --role-arn, --report-url and --manifest-url (or --manifest-generator)")
    account = args.account_id or env.client("sts").get_caller_identity()["Account"]
    control = env.client("s3control")
    for note in BATCH_LIMITS:
        print(f"note: {note}", file=sys.stderr)
    if args.manifest_generator:
        buckets = sorted({parse_s3_url(t).bucket for t in args.targets})
        if not args.apply:
            print(f"dry run: would submit one generated-manifest job per bucket: {', '.join(buckets)}")
            return 1
        for bucket in buckets:
            target = env.classifier.required(bucket, "")
            job = submit_generated_batch(control, bucket=bucket, target=target, account_id=account, role_arn=args.role_arn, report_url=args.report_url)  # type: ignore[arg-type]
            print(f"submitted job {job['JobId']} for s3://{bucket} (unencrypted STANDARD objects)")
        return 1
    plan = plan_batch(records, env.classifier, with_versions=args.with_versions)
    for record, reason in plan.local:
        print(f"local    s3://{record.bucket}/{record.key}: {reason}")
    for group in plan.groups.values():
        print(f"batch    {len(group.rows)} objects -> {group.target.describe()}, storage class {group.storage_class}")
    if not args.apply:
        print(f"dry run: {plan.batch_count} objects would go to Batch Operations, {len(plan.local)} stay local")
        return 1 if plan.batch_count or plan.local else 0
    for job in submit_batch(env.s3, control, plan, account_id=account, role_arn=args.role_arn, manifest_url=args.manifest_url, report_url=args.report_url):
        print(f"submitted job {job['JobId']}: {job['objects']} objects, manifest {job['manifest']} (ETag {job['etag']})")
    if plan.local:
        print(f"{len(plan.local)} objects stay with the local fixer: sse-guard fix --apply")
    return 1


def _cmd_buckets(args: argparse.Namespace) -> int:
    from .scan._buckets import audit_bucket, list_bucket_names, recommended_bucket_policy

    env = _Env(args)
    if args.print_policy:
        required = env.classifier.required(args.print_policy, "")
        print(json.dumps(recommended_bucket_policy(args.print_policy, required), indent=2))
        return 0
    names = args.buckets or list_bucket_names(env.s3)
    reports = [audit_bucket(env.s3, env.classifier, name) for name in names]
    if args.format == "json":
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    else:

        def yn(v: bool | None) -> str:
            return "-" if v is None else ("yes" if v else "no")

        print(f"{'bucket':<32} {'default':<9} {'meets':<5} {'bkt-key':<7} {'sse-c-blocked':<13} {'deny-unenc':<10} {'deny-key':<8} reason")
        for r in reports:
            print(
                f"{r.bucket:<32} {r.default_encryption or 'none':<9} {yn(r.default_meets_policy):<5} {yn(r.bucket_key):<7} "
                f"{yn(r.sse_c_blocked):<13} {yn(r.denies_unencrypted):<10} {yn(r.denies_wrong_key):<8} {r.reason}"
            )
    if any(r.error for r in reports):
        return 2
    return 0 if all(r.ok for r in reports) else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        from . import demo

        return int(demo.main(argv[1:]) or 0)
    args = _parser().parse_args(argv)
    try:
        if args.command == "scan":
            return _cmd_scan(args)
        if args.command == "fix":
            return _cmd_fix(args)
        return _cmd_buckets(args)
    except (SSEGuardError, ClientError, BotoCoreError, OSError) as e:
        print(f"sse-guard: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sse-guard: interrupted", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

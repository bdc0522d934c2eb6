"""HEAD worker processes: the same records, no key lost when a worker dies, throttling
still adapts, checkpoints still hold. Worker processes cannot reach an in-process moto,
so the S3 tests run on the moto server (and skip in mock mode, saying why)."""

from __future__ import annotations

import datetime
import functools
from typing import Any, ClassVar

import pytest
import worker_hooks
from scan_helpers import Keys, alias_of, kms_a_policy, seed_every_class

from sse_guard.cli import _parser
from sse_guard.policy import Policy
from sse_guard.scan import Scanner, make_classifier, make_s3_client
from sse_guard.scan._workers import S3ClientSpec, fast_timestamp, tuned_parser_factory


def needs_server(backend: Any) -> None:
    if backend.name == "mock":
        pytest.skip("worker processes cannot reach an in-process moto (mock_aws patches this process only)")


def client(backend: Any, **kw: Any) -> Any:
    return make_s3_client(backend.session(), max_pool_connections=16, **kw)


def scanner(backend: Any, s3: Any, policy: Policy, *, hold_local: bool = True, **kw: Any) -> Scanner:
    """A scanner with 2 worker processes; with ``hold_local`` this process's own HEAD
    threads wait until the workers are up, so that (nearly) every key goes to a worker."""
    kw.setdefault("workers", 4)
    kw.setdefault("max_workers", 4)
    kw.setdefault("processes", 2)
    classifier = make_classifier(s3, policy, kms_client=backend.client("kms"))
    sc = Scanner(s3, classifier=classifier, **kw)
    if hold_local:
        s3.meta.events.register_first(
            "before-send.s3.HeadObject", lambda **_: sc._retire.wait(60) and None, unique_id="hold-local"
        )
    return sc


def seed(s3: Any, bucket: str, n: int) -> list[str]:
    s3.create_bucket(Bucket=bucket)
    keys = [f"k{i:03d}" for i in range(n)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    return keys


def test_worker_processes_give_the_same_records_as_threads(backend: Any, kms_keys: Keys) -> None:
    needs_server(backend)
    s3 = client(backend)
    bucket = backend.bucket("same")
    s3.create_bucket(Bucket=bucket)
    expected = seed_every_class(s3, bucket, kms_keys, alias=alias_of(backend, kms_keys.a))
    s3.put_object(
        Bucket=bucket,
        Key="locked-ish.txt",
        Body=b"x",
        Metadata={"owner": "me"},
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=kms_keys.a,
        BucketKeyEnabled=True,
    )
    policy = kms_a_policy(backend, kms_keys)
    by_threads = {r.key: r for r in scanner(backend, s3, policy, processes=1, hold_local=False).scan([f"s3://{bucket}"])}
    sc = scanner(backend, s3, policy)
    by_processes = {r.key: r for r in sc.scan([f"s3://{bucket}"])}
    assert set(by_threads) == set(expected) | {"locked-ish.txt"}
    assert by_processes == by_threads
    assert {k: (r.etag, r.is_latest) for k, r in by_processes.items()} == {k: (r.etag, r.is_latest) for k, r in by_threads.items()}
    assert sc.stats.processes == 2 and sc.pool is not None and sc.pool.crashes == 0


def test_a_worker_killed_mid_scan_loses_no_key(backend: Any, tmp_path: Any) -> None:
    needs_server(backend)
    s3 = client(backend)
    bucket = backend.bucket("killed")
    keys = seed(s3, bucket, 40)
    spec = S3ClientSpec.from_client(s3, setup=functools.partial(worker_hooks.kill_once_on, str(tmp_path / "dead"), "/k017"))
    sc = scanner(backend, s3, Policy(), client_spec=spec, page_size=10)
    records = list(sc.scan([f"s3://{bucket}"]))
    assert sorted(r.key for r in records) == keys  # each exactly once
    assert not [r for r in records if r.is_error]
    assert (tmp_path / "dead").exists() and sc.pool is not None and sc.pool.crashes == 1


def test_a_key_that_kills_every_worker_is_an_error_record_and_the_rest_goes_on(backend: Any) -> None:
    needs_server(backend)
    s3 = client(backend)
    bucket = backend.bucket("poison")
    keys = seed(s3, bucket, 30)
    spec = S3ClientSpec.from_client(s3, setup=functools.partial(worker_hooks.kill_always_on, "/k011"))
    sc = scanner(backend, s3, Policy(), client_spec=spec)
    records = list(sc.scan([f"s3://{bucket}"]))
    assert sorted(r.key for r in records) == keys
    (bad,) = [r for r in records if r.is_error]
    assert bad.key == "k011" and bad.compliant is None and "WorkerDied" in (bad.error or "")
    assert sc.stats.errors == 1 and sc.stats.inspected == 30


def test_throttling_in_the_workers_shrinks_their_concurrency_and_no_key_is_lost(backend: Any) -> None:
    needs_server(backend)
    s3 = client(backend, retries=1)  # botocore does not retry: the workers must
    bucket = backend.bucket("throttled")
    keys = seed(s3, bucket, 60)
    spec = S3ClientSpec.from_client(s3, setup=worker_hooks.throttle_twice)
    sc = scanner(backend, s3, Policy(), client_spec=spec, workers=8, max_workers=8)
    records = list(sc.scan([f"s3://{bucket}"]))
    assert sorted(r.key for r in records) == keys
    assert not [r for r in records if r.is_error]
    # Keys the held local threads took are not throttled (the faults live in the workers).
    assert 2 * (60 - 8) <= sc.stats.throttled <= 120
    assert sc.pool is not None and sc.pool.cuts >= 1 and sc.pool.lowest < 4


def test_an_interrupted_scan_with_workers_resumes_from_its_state_file(backend: Any, tmp_path: Any) -> None:
    needs_server(backend)
    s3 = client(backend)
    bucket = backend.bucket("resume")
    keys = seed(s3, bucket, 60)
    state = tmp_path / "scan.state"
    first = scanner(backend, s3, Policy(), page_size=5, state_file=state)
    seen: list[str] = []
    it = first.scan([f"s3://{bucket}"])
    for rec in it:
        seen.append(rec.key)
        if len(seen) == 25:
            break
    it.close()
    second = scanner(backend, s3, Policy(), page_size=5, state_file=state, hold_local=False)
    rest = [r.key for r in second.scan([f"s3://{bucket}"])]
    assert set(seen) | set(rest) == set(keys)
    assert len(rest) < len(keys)


def test_auto_runs_a_small_scan_in_this_process(backend: Any) -> None:
    s3 = client(backend)
    bucket = backend.bucket("small")
    keys = seed(s3, bucket, 12)
    classifier = make_classifier(s3, Policy(), kms_client=backend.client("kms"))
    sc = Scanner(s3, classifier=classifier, workers=2, max_workers=4, processes="auto")
    assert sorted(r.key for r in sc.scan([f"s3://{bucket}"])) == keys
    assert sc.pool is None and sc.stats.processes == 1


def test_auto_starts_workers_once_the_listing_runs_past_a_page(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    needs_server(backend)
    monkeypatch.setattr("sse_guard.scan._scanner.auto_processes", lambda: 2)
    s3 = client(backend)
    bucket = backend.bucket("big")
    keys = seed(s3, bucket, 40)
    sc = scanner(backend, s3, Policy(), processes="auto", page_size=5)
    assert sorted(r.key for r in sc.scan([f"s3://{bucket}"])) == keys
    assert sc.pool is not None and sc.stats.processes == 2


def test_bad_processes_values_are_refused() -> None:
    with pytest.raises(Exception, match="processes"):
        Scanner(object(), classifier=object(), processes=0)  # type: ignore[arg-type]
    args = _parser().parse_args(["scan", "s3://b", "--processes", "3"])
    assert args.processes == 3
    assert _parser().parse_args(["scan", "s3://b"]).processes == "auto"
    with pytest.raises(SystemExit):
        _parser().parse_args(["scan", "s3://b", "--processes", "none"])


@pytest.mark.parametrize(
    "value",
    ["Wed, 01 Jan 2025 00:00:00 GMT", "Mon, 29 Feb 2016 23:59:59 GMT", "2099-01-01T00:00:00.000Z", "2099-01-01T00:00:00Z", "1700000000", "Thu, 31 Feb 2025 00:00:00 GMT"],
)
def test_the_fast_timestamp_parser_agrees_with_botocores(value: str) -> None:
    from botocore.utils import parse_timestamp

    try:
        want: Any = parse_timestamp(value)
    except ValueError as e:
        want = type(e)
    try:
        got: Any = fast_timestamp(value)
    except ValueError as e:
        got = type(e)
    assert got == want and (not isinstance(got, datetime.datetime) or got.tzinfo == want.tzinfo)


def test_the_tuned_parser_reads_a_head_response_as_botocore_does() -> None:
    import botocore.session
    from botocore.awsrequest import HeadersDict
    from botocore.parsers import ResponseParserFactory

    model = botocore.session.get_session().get_service_model("s3").operation_model("HeadObject")
    headers = HeadersDict(
        {
            "Content-Length": "1024",
            "ETag": '"abc"',
            "Last-Modified": "Wed, 01 Jan 2025 00:00:00 GMT",
            "X-Amz-Server-Side-Encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:us-east-1:1:key/a",
            "x-amz-server-side-encryption-bucket-key-enabled": "true",
            "x-amz-object-lock-retain-until-date": "2099-01-01T00:00:00.000Z",
            "x-amz-object-lock-mode": "GOVERNANCE",
            "x-amz-version-id": "v1",
            "x-amz-meta-Owner": "me",
            "x-amz-meta-x-amz-key-v2": "d3JhcHBlZA==",
            "x-amz-storage-class": "GLACIER",
            "Expires": "Thu, 01 Dec 1994 16:00:00 GMT",
        }
    )
    response = {"headers": headers, "status_code": 200, "body": b""}
    stock = ResponseParserFactory().create_parser("rest-xml").parse(dict(response), model.output_shape)
    tuned = tuned_parser_factory().create_parser("rest-xml").parse(dict(response), model.output_shape)
    assert tuned == stock


def test_workers_get_refreshed_credentials() -> None:
    from sse_guard.scan._workers import WorkerPool, _SharedCredentials, _Worker

    shared = _SharedCredentials("a", "b", None)
    frozen = shared.get_frozen_credentials()
    shared.swap("c", "d", "t")
    assert tuple(frozen)[:3] == ("a", "b", None)  # a request being signed keeps its snapshot
    assert tuple(shared.get_frozen_credentials())[:3] == ("c", "d", "t")

    current = [("a", "b", None)]
    pool = WorkerPool(S3ClientSpec(), lambda: current[0], lambda t, f: None, processes=1, workers=1, max_workers=1, max_attempts=1, refresh_every=0)
    pool._creds_sent = current[0]

    class Conn:
        sent: ClassVar[list[Any]] = []

        def send(self, msg: Any) -> None:
            self.sent.append(msg)

    pool._workers.append(_Worker(0, None, Conn(), None, capacity=1))
    pool._refresh_credentials()
    assert Conn.sent == []  # unchanged: nothing sent
    current[0] = ("c", "d", "t")
    pool._refresh_credentials()
    assert Conn.sent == [("creds", ("c", "d", "t"))]

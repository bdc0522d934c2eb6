"""The plugin as an application sees it, through pytester runs (kept few: each is slow)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

_INI = """
[pytest]
addopts = --strict-markers
filterwarnings =
    error
    ignore::DeprecationWarning:botocore.*
    ignore::DeprecationWarning:moto.*
    ignore::DeprecationWarning:werkzeug.*
    ignore::ResourceWarning
"""

_APP_TESTS = '''
import pytest
from sse_guard import PolicyViolation


def test_the_guarded_client_injects_the_bucket_default(sse_guard_s3, sse_guard_bucket, sse_guard_kms_key, sse_guard_recorder):
    bucket = sse_guard_bucket("SSE-KMS")
    sse_guard_s3.put_object(Bucket=bucket, Key="report.csv", Body=b"a,b")
    sse_guard_recorder.assert_sse("PutObject", "aws:kms", kms_key_id=sse_guard_kms_key.arn, key="report.csv")


@pytest.mark.sse_guard(policy={"mode": "enforce", "rules": [{"bucket": "*", "algorithm": "aws:kms:dsse"}]})
def test_the_marker_gives_the_test_its_policy(sse_guard_s3, sse_guard_bucket, sse_guard_recorder, sse_guard_guard):
    bucket = sse_guard_bucket("SSE-S3")
    sse_guard_s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert sse_guard_recorder.sse_of("PutObject") == {"x-amz-server-side-encryption": "aws:kms:dsse"}
    with pytest.raises(PolicyViolation):
        sse_guard_s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="AES256")
    assert sse_guard_guard.stats.refused == 1


@pytest.mark.sse_guard(server=True)
def test_server_mode_talks_to_loopback(sse_guard_aws, sse_guard_s3, sse_guard_legacy, sse_guard_recorder):
    seeded = sse_guard_legacy(keys=1)
    sse_guard_s3.put_object(Bucket=seeded.bucket, Key="new", Body=b"x")
    assert sse_guard_recorder.last("PutObject").url.startswith(sse_guard_aws.endpoint_url)
    sse_guard_recorder.assert_sse("PutObject", "SSE-S3")
'''


def test_an_applications_tests_pass_with_the_fixtures_and_the_marker(pytester: pytest.Pytester) -> None:
    pytester.makeini(_INI)
    pytester.makepyfile(test_app=_APP_TESTS)
    result = pytester.runpytest_inprocess("-q")
    result.assert_outcomes(passed=3)


def test_a_request_that_would_leave_the_machine_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeini(_INI)
    pytester.makepyfile(
        test_escape='''
import boto3

def test_custom_endpoint(sse_guard_session, sse_guard_aws):
    s3 = sse_guard_session.client("s3", endpoint_url="https://s3.example.com")
    s3.list_buckets()

def test_swallowed(sse_guard_aws):
    # a session the code under test makes itself, and an error it swallows
    kms = boto3.Session().client("kms", endpoint_url="https://kms.example.com")
    try:
        kms.list_keys()
    except Exception:
        pass

def test_loopback_is_allowed(sse_guard_aws):
    s3 = boto3.Session().client("s3", endpoint_url="http://127.0.0.1:9")
    try:
        s3.list_buckets()
    except Exception as e:
        assert "EndpointConnectionError" in type(e).__name__, e
'''
    )
    result = pytester.runpytest_inprocess("-q")
    result.assert_outcomes(passed=2, failed=1, errors=1)  # test_swallowed: passed, then errors at teardown
    result.stdout.fnmatch_lines(["*NonLoopbackRequestError: sse_guard: s3 request to https://s3.example.com/ would have left the machine*"])
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_swallowed*", "*sse_guard: kms request to https://kms.example.com/ would have left*"])


def test_the_plugin_can_be_switched_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_off="def test_off(sse_guard_s3):\n    pass\n")
    result = pytester.runpytest_inprocess("-q", "-p", "no:sse_guard")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'sse_guard_s3' not found*"])


def test_loading_the_plugin_imports_no_moto() -> None:
    code = "import sys, sse_guard.pytest_plugin; assert 'moto' not in sys.modules, 'moto imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

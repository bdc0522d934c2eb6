"""Every code block in the README runs: python blocks against moto, TOML blocks through
the policy loader, the quick start's commands are the ones .ci/run runs."""

from __future__ import annotations

import base64
import os
import re
import sys
from pathlib import Path

import pytest

import sse_guard

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.S | re.M)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def blocks(kind: str) -> list[str]:
    return [body for lang, body in BLOCKS if lang == kind]


def _defines_tests(code: str) -> bool:
    return re.search(r"^def test_", code, flags=re.M) is not None


@pytest.mark.parametrize("code", [c for c in blocks("python") if _defines_tests(c)], ids=lambda c: c.splitlines()[0][:40])
def test_python_blocks_with_tests_pass_under_the_plugin(code: str, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_readme_block=code)
    pytester.makeini("[pytest]\nfilterwarnings =\n    ignore::DeprecationWarning\n")
    result = pytester.runpytest_subprocess("-p", "sse_guard", "-q")
    result.assert_outcomes(passed=len(re.findall(r"^def test_", code, flags=re.M)))


@pytest.mark.parametrize("code", [c for c in blocks("python") if not _defines_tests(c)], ids=lambda c: c.splitlines()[0][:40])
def test_python_blocks_run_against_moto(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws

    monkeypatch.chdir(tmp_path)
    with mock_aws():
        import boto3

        s3 = boto3.client("s3")
        for bucket in sorted(set(re.findall(r'Bucket="([^"]+)"', code))):
            s3.create_bucket(Bucket=bucket)
        namespace: dict[str, object] = {"__name__": "readme"}
        exec(compile(code, "README.md", "exec"), namespace)
        guard = namespace.get("guard")
        if isinstance(guard, sse_guard.Guard):
            guard.unregister()


@pytest.mark.parametrize("text", blocks("toml"), ids=lambda t: t.splitlines()[0][:40])
def test_toml_blocks_are_valid_policies(text: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PARTNER_SSE_C_KEY", base64.b64encode(os.urandom(32)).decode())
    data = tomllib.loads(text)
    sse_guard.Policy.from_dict(data, base_dir=tmp_path)


def test_the_quick_start_test_command_is_what_ci_runs() -> None:
    commands = [line for body in blocks("bash") for line in body.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2, commands
    assert commands[0].endswith("sse-guard demo")
    assert commands[1].endswith(".venv/bin/pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/sse-guard demo" in ci
    assert "pip install -e '.[test]'" in ci and ".venv/bin/pytest" in ci


def _console_sessions() -> list[list[tuple[str, list[str]]]]:
    sessions = []
    for body in blocks("console"):
        steps: list[tuple[str, list[str]]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
        sessions.append(steps)
    return sessions


def _seed_legacy_data() -> None:
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="legacy-data")
    s3.put_object(Bucket="legacy-data", Key="reports/2019/q1.csv", Body=b"x" * 3072)
    s3.put_object(Bucket="legacy-data", Key="reports/2019/q2.csv", Body=b"y" * 3072)
    s3.put_object(Bucket="legacy-data", Key="ok/sse-s3.bin", Body=b"z" * 100, ServerSideEncryption="AES256")
    s3.put_object(Bucket="legacy-data", Key="ok/dsse.bin", Body=b"w" * 10, ServerSideEncryption="aws:kms:dsse")


def test_console_blocks_print_what_the_cli_prints(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The CLI sections, replayed in order on a moto S3 seeded as they describe."""
    import shlex

    from moto import mock_aws

    from sse_guard import cli

    monkeypatch.chdir(tmp_path)
    with mock_aws():
        _seed_legacy_data()
        last = 0
        for session in _console_sessions():
            for command, expected in session:
                if command == "echo $?":
                    assert expected == [str(last)]
                    continue
                argv = shlex.split(command)
                assert argv[0] == "sse-guard"
                last = cli.main([*argv[1:], "--no-progress"] if argv[1] == "scan" else argv[1:])
                captured = capsys.readouterr()
                printed = (captured.out + captured.err).rstrip("\n").splitlines()
                got = [line.rstrip() for line in printed]
                want = [line.rstrip() for line in expected]
                # objects are inspected and fixed concurrently: their lines come in any order
                assert sorted(got) == sorted(want), command
                assert got[-1] == want[-1], command

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

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.S | re.M)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def blocks(kind: str) -> list[str]:
    return [body for lang, body in BLOCKS if lang == kind]


@pytest.mark.parametrize("code", blocks("python"), ids=lambda c: c.splitlines()[0][:40])
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
    if "keyring" in text and "key_file" in text:
        pytest.skip("needs key files")  # pragma: no cover
    sse_guard.Policy.from_dict(data, base_dir=tmp_path)


def test_the_quick_start_test_command_is_what_ci_runs() -> None:
    commands = [line for body in blocks("bash") for line in body.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2, commands
    assert commands[0].endswith("sse-guard demo")
    assert commands[1].endswith(".venv/bin/pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/sse-guard demo" in ci
    assert "pip install -e '.[test]'" in ci and ".venv/bin/pytest" in ci

"""Registering and unregistering guards on sessions and clients."""

from __future__ import annotations

from typing import Any

import boto3
import botocore.session
import pytest

import sse_guard
from backends import Backend, Wire, sse_headers
from sse_guard import ConfigurationError, Policy

SSE = "x-amz-server-side-encryption"


def _bucket(backend: Backend) -> str:
    name = backend.bucket()
    backend.client("s3").create_bucket(Bucket=name)
    return name


def _handler_count(client: Any) -> int:
    emitter = client.meta.events
    return sum(1 for _ in emitter._emitter._handlers.prefix_search("provide-client-params.s3.PutObject"))


def test_registering_twice_is_harmless(backend: Backend, wire: Wire) -> None:
    bucket = _bucket(backend)
    session = backend.session()
    first = sse_guard.register(session, policy=Policy())
    second = sse_guard.register(session, policy=Policy())
    assert first is second
    s3 = wire.attach(session.client("s3"))
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert first.stats.injected == 1  # one set of handlers ran, not two
    assert sse_guard.register(s3, policy=Policy()) is first


def test_a_second_different_guard_on_the_same_target_is_an_error(backend: Backend) -> None:
    session = backend.session()
    sse_guard.register(session, policy=Policy())
    with pytest.raises(ConfigurationError, match="already guarded"):
        sse_guard.register(session, policy=Policy(mode="enforce"))


def test_unregister_removes_every_handler(backend: Backend, wire: Wire) -> None:
    bucket = _bucket(backend)
    session = backend.session()
    baseline = _handler_count(session.client("s3"))
    guard = sse_guard.register(session, policy=Policy())
    s3 = wire.attach(session.client("s3"))
    assert _handler_count(s3) > baseline
    guard.unregister()
    assert _handler_count(s3) == baseline
    assert "upload_file" not in vars(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert sse_headers(wire.one("PutObject")) == {}
    later = wire.attach(session.client("s3"))
    wire.clear()
    later.put_object(Bucket=bucket, Key="k2", Body=b"x")
    assert sse_headers(wire.one("PutObject")) == {}
    # and the target can be guarded again
    assert sse_guard.register(session, policy=Policy(mode="audit")).mode == "audit"


def test_clients_made_before_a_session_is_registered_are_not_guarded(backend: Backend, wire: Wire) -> None:
    """Documented: botocore copies a session's handlers into a client when it is made."""
    bucket = _bucket(backend)
    session = backend.session()
    early = wire.attach(session.client("s3"))
    guard = sse_guard.register(session, policy=Policy())
    early.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert sse_headers(wire.one("PutObject")) == {}
    sse_guard.register(early, policy=Policy())  # the documented remedy: register it too
    wire.clear()
    early.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert sse_headers(wire.one("PutObject")) == {SSE: "AES256"}
    assert guard.stats.injected == 0


def test_a_botocore_session_can_be_guarded(backend: Backend, wire: Wire) -> None:
    bucket = _bucket(backend)
    core = botocore.session.get_session()
    guard = sse_guard.register(core, policy=Policy())
    s3 = wire.attach(boto3.Session(botocore_session=core, region_name="us-east-1").client("s3"))
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert sse_headers(wire.one("PutObject")) == {SSE: "AES256"}
    assert guard.stats.injected == 1


def test_only_s3_clients_and_sessions_can_be_guarded(backend: Backend) -> None:
    with pytest.raises(ConfigurationError, match="kms"):
        sse_guard.register(backend.client("kms"), policy=Policy())
    with pytest.raises(ConfigurationError, match="cannot guard"):
        sse_guard.register(object(), policy=Policy())


def test_mode_argument_overrides_the_policy(backend: Backend) -> None:
    guard = sse_guard.register(backend.session(), policy=Policy(mode="audit"), mode="enforce")
    assert guard.mode == "enforce" and guard.policy.mode == "audit"
    with pytest.raises(ConfigurationError):
        sse_guard.register(backend.session(), policy=Policy(), mode="block")  # type: ignore[arg-type]


def test_policy_none_reads_the_environment(backend: Backend, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.toml"
    path.write_text('mode = "audit"\n')
    monkeypatch.setenv("SSE_GUARD_POLICY", str(path))
    assert sse_guard.register(backend.session()).mode == "audit"


def test_public_api_is_exactly_all() -> None:
    import types

    public = {
        name
        for name, value in vars(sse_guard).items()
        if name.isidentifier() and not name.startswith("_") and (not isinstance(value, types.ModuleType) or name == "errors")
    }
    assert public == set(sse_guard.__all__) - {"__version__"}


def test_a_client_with_its_own_endpoint_resolves_aliases_there(moto_server_url: str) -> None:
    """A client made with endpoint_url (no AWS_ENDPOINT_URL): DescribeKey goes to it too."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_server_url}/moto-api/reset", method="POST", data=b""), timeout=10).read()
    kms = boto3.client("kms", endpoint_url=moto_server_url, region_name="us-east-1")
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/own", TargetKeyId=arn)
    s3 = boto3.client("s3", endpoint_url=moto_server_url, region_name="us-east-1")
    sent: list[str] = []
    policy = Policy.from_dict({"rules": [{"bucket": "*", "algorithm": "aws:kms", "kms_key_id": "alias/own"}]})
    guard = sse_guard.Guard(policy)
    real = guard._make_kms_client

    def recording() -> Any:
        client = real()
        client.meta.events.register("before-send.kms", lambda request, **kw: sent.append(request.url))
        return client

    guard._keys._factory = recording
    guard.register(s3)
    assert guard.policy.rules[0].encryption.key_id == arn  # type: ignore[union-attr]
    assert sent and all(url.startswith(moto_server_url) for url in sent)


def test_clients_that_go_away_leave_nothing_behind_in_the_guard(backend: Backend) -> None:
    import gc

    session = backend.session()
    guard = sse_guard.register(session, policy=Policy())
    for _ in range(20):
        session.client("s3")
    gc.collect()
    kept = session.client("s3")
    gc.collect()
    assert len(guard._bindings) == 1
    assert guard._bindings[0].client() is kept


def test_envelope_handlers_are_bound_only_when_the_policy_has_a_client_side_rule(backend: Backend, tmp_path: Any) -> None:
    def envelope_handlers(client: Any) -> int:
        handlers = client.meta.events._emitter._handlers.prefix_search("before-parameter-build.s3.PutObject")
        return sum(1 for h in handlers if getattr(getattr(h, "func", None), "__module__", "").startswith("sse_guard.envelope"))

    plain = backend.client("s3")
    sse_guard.register(plain, policy=Policy())
    assert envelope_handlers(plain) == 0
    (tmp_path / "k").write_bytes(b"k" * 32)
    policy = Policy.from_dict({"rules": [{"bucket": "v*", "algorithm": "client-side", "keyring": {"type": "raw-aes", "key_file": "k"}}]}, base_dir=tmp_path)
    encrypting = backend.client("s3")
    sse_guard.register(encrypting, policy=policy)
    assert envelope_handlers(encrypting) == 1

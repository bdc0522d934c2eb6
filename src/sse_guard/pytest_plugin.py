"""pytest fixtures that run an application's tests with the guard on, against moto.

Loaded through the ``pytest11`` entry point as soon as sse_guard is installed; switch it
off with ``-p no:sse_guard``. Importing this module imports neither moto nor anything
else a test run does not ask for: moto (a test-only dependency) is imported by the
fixtures that need it.

Fixtures (see the README, "pytest fixtures"):

``sse_guard_aws``       moto-backed AWS: fake credentials and region, in-process
                        ``mock_aws`` or ``ThreadedMotoServer`` on 127.0.0.1
``sse_guard_policy``    the policy the guarded fixtures use (marker, ini, discovery)
``sse_guard_session``   a guarded ``boto3.Session``
``sse_guard_guard``     the ``Guard`` behind it (statistics)
``sse_guard_s3``        a guarded S3 client
``sse_guard_recorder``  a ``WireRecorder`` of every request the guarded session sent
``sse_guard_kms_key``   a KMS key (``KmsKey``: id, ARN, alias, alias ARN)
``sse_guard_bucket``    a bucket factory with a chosen default encryption
``sse_guard_legacy``    a seeder of legacy plaintext objects

Marker: ``@pytest.mark.sse_guard(policy=..., mode=..., server=...)``.
Ini options: ``sse_guard_policy`` (a policy file), ``sse_guard_server`` (true: use the
moto server instead of the in-process mock).

Safety: no request made during a test that uses these fixtures may leave the machine.
Every botocore client created while ``sse_guard_aws`` is active checks, at the moment
botocore would really open a connection, that the endpoint is a loopback address. The
in-process mock answers requests before that point, so they never reach it; a request the
mock does not answer (an unknown endpoint, a service moto lacks) is stopped and fails
the test, even if the code under test swallows the exception.
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
import urllib.request
import uuid
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union
from urllib.parse import unquote, urlsplit

import pytest

if TYPE_CHECKING:
    import boto3
    import botocore.session

    from .guard import Guard
    from .policy import Mode, Policy
    from .settings import ServerSide

__all__ = [
    "DEFAULT_KMS_ALIAS",
    "BucketFactory",
    "KmsKey",
    "LegacySeeder",
    "MotoAWS",
    "NonLoopbackRequestError",
    "SeededObjects",
    "SentRequest",
    "WireRecorder",
]

MARKER = "sse_guard"
DEFAULT_KMS_ALIAS = "alias/sse-guard-test"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account

_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
_CLEARED_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_KMS",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)
_MARKER_KWARGS = frozenset({"policy", "mode", "server"})
_SSE_C_KEY_HEADERS = frozenset(
    {
        "x-amz-server-side-encryption-customer-key",
        "x-amz-copy-source-server-side-encryption-customer-key",
    }
)


# -- pytest hooks -----------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "sse_guard_policy",
        "sse_guard: policy file for the guarded fixtures (relative to the rootdir)",
        default="",
    )
    parser.addini(
        "sse_guard_server",
        "sse_guard: run the fixtures on moto's ThreadedMotoServer (127.0.0.1) instead of "
        "the in-process mock",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sse_guard(policy=None, mode=None, server=None): per-test options for the sse_guard "
        "fixtures: a policy (dict, TOML path or Policy), a mode override, and server=True "
        "for moto's ThreadedMotoServer on 127.0.0.1",
    )


_ESCAPED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "call" and call.excinfo is not None and call.excinfo.errisinstance(NonLoopbackRequestError):
        item.stash[_ESCAPED] = True  # already reported as the test's failure
    return report


# -- the loopback rule ------------------------------------------------------------------


class NonLoopbackRequestError(Exception):
    """A request made under the sse_guard fixtures would have left the machine."""


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs whose host is localhost or a loopback IP literal.

    Names other than ``localhost`` are not resolved: a DNS lookup would itself leave the
    machine, and its answer is not ours to trust.
    """
    host = urlsplit(url).hostname
    if host is None:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_CLIENT_MIXIN_ID = "sse_guard.pytest_plugin.loopback"
_GBE_PARAMS_EVENT = "provide-client-params.s3.GetBucketEncryption"
_GBE_EVENT = "after-call.s3.GetBucketEncryption"
_GBE_ID = "sse_guard.pytest_plugin.blocked-encryption-types"
_GBE_CONTEXT_KEY = "sse_guard_plugin_bucket"


class _Sandbox:
    """Process-wide hooks active while one ``sse_guard_aws`` fixture is.

    A botocore initializer reaches every session created during the test, the ones the
    code under test makes itself included; each session gives its clients a mixin that
    checks the endpoint at the last moment before botocore opens a connection.
    """

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.blocked_sse_c: set[str] = set()
        self._lock = threading.Lock()

    # botocore calls this for every new session
    def initialize(self, session: botocore.session.Session) -> None:
        events: Any = session  # botocore's stubs type handlers as **kwargs-only
        events.register("creating-client-class", self._add_mixin, unique_id=_CLIENT_MIXIN_ID)
        events.register(_GBE_PARAMS_EVENT, _note_bucket, unique_id=_GBE_ID + ".params")
        events.register(_GBE_EVENT, self._add_blocked_types, unique_id=_GBE_ID)

    def _add_mixin(self, base_classes: list[type], **kwargs: Any) -> None:
        from botocore.client import BaseClient

        sandbox = self

        class LoopbackOnly(BaseClient):
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, **kw)
                sandbox.confine(self)

        base_classes.insert(0, LoopbackOnly)

    def confine(self, client: Any) -> None:
        """Make ``client`` refuse to open a connection to anything but loopback."""
        endpoint = getattr(client, "_endpoint", None)
        send = getattr(endpoint, "_send", None)
        if send is None:  # pragma: no cover - a botocore without Endpoint._send
            raise RuntimeError(
                "sse_guard's pytest plugin cannot confine this botocore version's clients to "
                "loopback; refusing to run rather than risk reaching AWS"
            )
        service = client.meta.service_model.service_name
        sandbox = self

        def loopback_only_send(request: Any) -> Any:
            # Reached only when no before-send handler (moto's in-process mock) answered:
            # this request would really go over the network now.
            if not is_loopback_url(request.url):
                message = (
                    f"sse_guard: {service} request to {request.url.split('?', 1)[0]} would have "
                    "left the machine. Under the sse_guard fixtures only moto (in-process) and "
                    "loopback endpoints (127.0.0.1, ::1, localhost) are allowed; do not pass an "
                    "endpoint_url of your own, or use sse_guard_aws.endpoint_url"
                )
                sandbox.record_violation(message)
                raise NonLoopbackRequestError(message)
            return send(request)

        endpoint._send = loopback_only_send  # type: ignore[union-attr]

    def record_violation(self, message: str) -> None:
        with self._lock:
            self.violations.append(message)

    def _add_blocked_types(self, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        # moto stores BlockedEncryptionTypes nowhere; answer as S3 would for buckets the
        # factory made with block_sse_c=True.
        bucket = context.get(_GBE_CONTEXT_KEY)
        config = parsed.get("ServerSideEncryptionConfiguration")
        if not isinstance(config, dict):
            return
        with self._lock:
            blocked = bucket in self.blocked_sse_c
        if not blocked:
            return
        for rule in config.get("Rules", []):
            rule.setdefault("BlockedEncryptionTypes", {"EncryptionType": ["SSE-C"]})


def _note_bucket(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
    context[_GBE_CONTEXT_KEY] = params.get("Bucket")


# -- moto-backed AWS --------------------------------------------------------------------


@dataclass(frozen=True)
class KmsKey:
    """A KMS key in moto. ``key_id`` is the bare id; ``alias`` is ``alias/...``."""

    key_id: str
    arn: str
    alias: str
    alias_arn: str


class MotoAWS:
    """The moto-backed AWS of one test: fake credentials, region, and unguarded clients.

    ``mode`` is ``"mock"`` (in-process ``mock_aws``) or ``"server"`` (ThreadedMotoServer on
    127.0.0.1, whose URL is ``endpoint_url`` and is exported as ``AWS_ENDPOINT_URL``).
    """

    def __init__(self, mode: Literal["mock", "server"], endpoint_url: str | None, sandbox: _Sandbox) -> None:
        self.mode = mode
        self.endpoint_url = endpoint_url
        self.region = REGION
        self.account_id = ACCOUNT_ID
        self._sandbox = sandbox
        self._clients: dict[str, Any] = {}
        self._kms_keys: dict[str, KmsKey] = {}

    def session(self) -> boto3.Session:
        """A new, unguarded boto3 session for this AWS."""
        import boto3

        return boto3.Session(region_name=self.region)

    def client(self, service: str = "s3") -> Any:
        """An unguarded client (one per service, cached): for setup and for inspecting."""
        if service not in self._clients:
            session: Any = self.session()
            self._clients[service] = session.client(service)
        return self._clients[service]

    def kms_key(self, alias: str = DEFAULT_KMS_ALIAS, *, description: str = "sse_guard test key") -> KmsKey:
        """The KMS key behind ``alias``, created on first use."""
        if not alias.startswith("alias/"):
            raise ValueError(f"a KMS alias starts with 'alias/', got {alias!r}")
        if alias not in self._kms_keys:
            kms = self.client("kms")
            meta = kms.create_key(Description=description)["KeyMetadata"]
            kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
            alias_arn = f"arn:aws:kms:{self.region}:{meta['Arn'].split(':')[4]}:{alias}"
            self._kms_keys[alias] = KmsKey(meta["KeyId"], meta["Arn"], alias, alias_arn)
        return self._kms_keys[alias]

    @property
    def violations(self) -> list[str]:
        """Requests stopped by the loopback rule so far (each fails the test)."""
        return list(self._sandbox.violations)

    def _block_sse_c(self, bucket: str) -> None:
        with self._sandbox._lock:
            self._sandbox.blocked_sse_c.add(bucket)


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The marker's keyword arguments, the closest marker winning per keyword."""
    found: dict[str, Any] = {}
    for marker in request.node.iter_markers(MARKER):
        if marker.args:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER} takes keyword arguments only (policy=, mode=, server=)"
            )
        unknown = sorted(set(marker.kwargs) - _MARKER_KWARGS)
        if unknown:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER}: unknown argument {unknown[0]!r} (allowed: mode, policy, server)"
            )
        for name, value in marker.kwargs.items():
            found.setdefault(name, value)
    return found


def _import_moto() -> Any:
    try:
        import moto
    except ImportError as e:
        pytest.fail(
            "sse_guard's pytest fixtures need moto, a test-only dependency: "
            "pip install 'moto[server,s3,kms]' (or sse-guard[test]); "
            f"importing it failed: {e}",
            pytrace=False,
        )
    return moto


@pytest.fixture(scope="session")
def sse_guard_moto_server() -> Iterator[str]:
    """moto's ThreadedMotoServer on 127.0.0.1 (a free port), once per test session.

    Started only when a test asks for server mode; each test resets its state.
    """
    _import_moto()
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _reset_server(url: str) -> None:
    if not is_loopback_url(url):  # pragma: no cover - the fixture only makes loopback URLs
        raise NonLoopbackRequestError(url)
    req = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"")  # noqa: S310
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback only
        resp.read()


@pytest.fixture
def sse_guard_aws(request: pytest.FixtureRequest) -> Iterator[MotoAWS]:
    """A moto-backed AWS for one test, and the loopback rule while it lasts."""
    options = _options(request)
    server = options.get("server")
    if server is None:
        server = bool(request.config.getini("sse_guard_server"))
    _import_moto()
    import boto3
    import botocore

    sandbox = _Sandbox()
    with pytest.MonkeyPatch.context() as mp:
        for name in _CLEARED_ENV:
            mp.delenv(name, raising=False)
        for name, value in _FAKE_ENV.items():
            mp.setenv(name, value)
        # boto3's module-level default session may hold real credentials from before.
        mp.setattr(boto3, "DEFAULT_SESSION", None)
        botocore.register_initializer(sandbox.initialize)
        try:
            if server:
                url: str = request.getfixturevalue("sse_guard_moto_server")
                mp.setenv("AWS_ENDPOINT_URL", url)
                _reset_server(url)
                try:
                    yield MotoAWS("server", url, sandbox)
                finally:
                    _reset_server(url)
            else:
                from moto import mock_aws

                with mock_aws():
                    yield MotoAWS("mock", None, sandbox)
        finally:
            botocore.unregister_initializer(sandbox.initialize)
    # A violation the code under test swallowed still fails the test, at teardown.
    if sandbox.violations and not request.node.stash.get(_ESCAPED, False):
        pytest.fail("\n".join(sandbox.violations), pytrace=False)


# -- policy and guarded fixtures --------------------------------------------------------


@pytest.fixture
def sse_guard_policy(request: pytest.FixtureRequest) -> Policy:
    """The policy of the guarded fixtures.

    The marker's ``policy`` (a dict in the TOML file's structure, a path relative to the
    test file, or a ``Policy``), else the ``sse_guard_policy`` ini option (relative to
    the rootdir), else ``SSE_GUARD_POLICY`` or ``[tool.sse-guard]`` in the rootdir's
    pyproject.toml, else follow each bucket's default encryption. Override this fixture
    to compute a policy of your own.
    """
    from .policy import Policy

    given = _options(request).get("policy")
    if isinstance(given, Policy):
        return given
    test_dir = Path(str(request.node.path)).parent
    if isinstance(given, Mapping):
        return Policy.from_dict(given, source=f"@pytest.mark.{MARKER}", base_dir=test_dir)
    if isinstance(given, (str, os.PathLike)):
        return Policy.from_file(test_dir / given)
    if given is not None:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER}(policy=...): expected a dict, a path or a Policy, "
            f"got {type(given).__name__}"
        )
    ini = str(request.config.getini("sse_guard_policy"))
    if ini:
        return Policy.from_file(request.config.rootpath / ini)
    return Policy.discover(request.config.rootpath)


@dataclass
class _Guarded:
    session: boto3.Session
    guard: Guard


@pytest.fixture
def _sse_guard_guarded(
    request: pytest.FixtureRequest,
    sse_guard_aws: MotoAWS,
    sse_guard_policy: Policy,
    sse_guard_recorder: WireRecorder,
) -> Iterator[_Guarded]:
    from .guard import register

    mode: Mode | None = _options(request).get("mode")
    # The guard resolves KMS aliases to ARNs when it registers: every alias the policy
    # names exists in moto by then (the plugin's own alias is sse_guard_kms_key's key).
    for key_id in sorted(sse_guard_policy.kms_key_ids_to_resolve()):
        if key_id.startswith("alias/"):
            sse_guard_aws.kms_key(key_id)
    session = sse_guard_aws.session()
    sse_guard_recorder.attach(session)
    guard = register(session, sse_guard_policy, mode=mode)
    try:
        yield _Guarded(session, guard)
    finally:
        guard.unregister()
        sse_guard_recorder.detach()


@pytest.fixture
def sse_guard_session(_sse_guard_guarded: _Guarded) -> boto3.Session:
    """A boto3 session with the guard registered; its clients are recorded."""
    return _sse_guard_guarded.session


@pytest.fixture
def sse_guard_guard(_sse_guard_guarded: _Guarded) -> Guard:
    """The ``Guard`` registered on ``sse_guard_session`` (``.stats``, ``.policy``)."""
    return _sse_guard_guarded.guard


@pytest.fixture
def sse_guard_s3(sse_guard_session: boto3.Session) -> Any:
    """A guarded S3 client made from ``sse_guard_session``."""
    return sse_guard_session.client("s3")


@pytest.fixture
def sse_guard_kms_key(sse_guard_aws: MotoAWS) -> KmsKey:
    """A KMS key in moto, under ``alias/sse-guard-test``."""
    return sse_guard_aws.kms_key(DEFAULT_KMS_ALIAS)


# -- buckets and legacy objects ---------------------------------------------------------

DefaultEncryption = Union[
    None,
    Literal["none", "SSE-S3", "SSE-KMS", "DSSE-KMS"],
    "ServerSide",
]


class BucketFactory:
    """Makes buckets with a chosen default encryption, through an unguarded client.

    ``default``: ``None``/``"none"`` (no configuration: in moto, objects written without
    SSE headers stay plaintext), ``"SSE-S3"``, ``"SSE-KMS"`` / ``"DSSE-KMS"`` (under
    ``sse_guard_kms_key``; ``bucket_key=True`` for an S3 Bucket Key), or a setting value
    (``SSES3()``, ``SSEKMS.of(arn, bucket_key=True)``, ``DSSEKMS.of(arn)``).

    ``block_sse_c=True`` adds ``BlockedEncryptionTypes: SSE-C`` (with SSE-S3 if no other
    default was asked for, as S3 itself has). moto accepts and drops that field, and does
    not refuse SSE-C writes; the plugin puts it back into the GetBucketEncryption answers
    that clients made during the test receive, so the guard sees what S3 would say.
    """

    def __init__(self, aws: MotoAWS) -> None:
        self._aws = aws
        self.created: list[str] = []

    def __call__(
        self,
        default: DefaultEncryption = None,
        *,
        name: str | None = None,
        bucket_key: bool = False,
        block_sse_c: bool = False,
        versioning: bool = False,
    ) -> str:
        bucket = name or f"sse-guard-{uuid.uuid4().hex[:12]}"
        s3 = self._aws.client("s3")
        s3.create_bucket(Bucket=bucket)
        if versioning:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        rule = self._rule(default, bucket_key)
        if block_sse_c:
            rule = rule or {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
            rule["BlockedEncryptionTypes"] = {"EncryptionType": ["SSE-C"]}
            self._aws._block_sse_c(bucket)
        if rule is not None:
            s3.put_bucket_encryption(
                Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]}
            )
        self.created.append(bucket)
        return bucket

    def _rule(self, default: DefaultEncryption, bucket_key: bool) -> dict[str, Any] | None:
        from .settings import DSSEKMS, SSEC, SSEKMS, SSES3, ClientSide

        if default is None or default == "none":
            return None
        if isinstance(default, str):
            if default == "SSE-S3":
                default = SSES3()
            elif default == "SSE-KMS":
                default = SSEKMS(key_id=self._aws.kms_key().arn, bucket_key=bucket_key)
            elif default == "DSSE-KMS":
                default = DSSEKMS(key_id=self._aws.kms_key().arn)
            else:
                raise ValueError(
                    f"default encryption {default!r}: use None, 'none', 'SSE-S3', 'SSE-KMS', "
                    "'DSSE-KMS' or a setting value"
                )
        if isinstance(default, (SSEC, ClientSide)):
            raise ValueError(f"{default.label} cannot be a bucket's default encryption")
        if isinstance(default, SSES3):
            return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        algorithm = "aws:kms" if isinstance(default, SSEKMS) else "aws:kms:dsse"
        by_default: dict[str, Any] = {"SSEAlgorithm": algorithm}
        if default.key_id:
            by_default["KMSMasterKeyID"] = default.key_id
        rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": by_default}
        if isinstance(default, SSEKMS) and (default.bucket_key or bucket_key):
            rule["BucketKeyEnabled"] = True
        return rule


@pytest.fixture
def sse_guard_bucket(sse_guard_aws: MotoAWS) -> BucketFactory:
    """A factory: ``sse_guard_bucket("SSE-KMS", bucket_key=True) -> bucket name``."""
    return BucketFactory(sse_guard_aws)


@dataclass(frozen=True)
class SeededObjects:
    """Legacy objects the seeder wrote: ``bucket`` and their ``keys``."""

    bucket: str
    keys: tuple[str, ...]

    @property
    def uris(self) -> tuple[str, ...]:
        return tuple(f"s3://{self.bucket}/{k}" for k in self.keys)


class LegacySeeder:
    """Writes plaintext objects, as code from before the rule did.

    Through an unguarded client, without SSE headers, into a bucket with no default
    encryption (a new one unless given): in moto those objects stay unencrypted (real S3
    has applied SSE-S3 to every new object since 2023). Each is checked with HeadObject.
    """

    def __init__(self, aws: MotoAWS, buckets: BucketFactory) -> None:
        self._aws = aws
        self._buckets = buckets

    def __call__(
        self,
        bucket: str | None = None,
        keys: Iterable[str] | int = 3,
        *,
        body: bytes = b"written before sse_guard",
        prefix: str = "legacy/",
        metadata: Mapping[str, str] | None = None,
    ) -> SeededObjects:
        from botocore.exceptions import ClientError

        s3 = self._aws.client("s3")
        if bucket is None:
            bucket = self._buckets()
        else:
            try:
                s3.get_bucket_encryption(Bucket=bucket)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ServerSideEncryptionConfigurationNotFoundError":
                    raise
            else:
                raise ValueError(
                    f"bucket {bucket!r} has a default encryption, so objects written to it are "
                    "encrypted: seed legacy objects into a bucket made with sse_guard_bucket(None)"
                )
        names = [f"{prefix}{i:04d}.txt" for i in range(keys)] if isinstance(keys, int) else list(keys)
        for key in names:
            s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=dict(metadata or {}))
            head = s3.head_object(Bucket=bucket, Key=key)
            if head.get("ServerSideEncryption") or head.get("SSECustomerAlgorithm"):
                raise RuntimeError(f"s3://{bucket}/{key} was stored encrypted; it is not legacy")
        return SeededObjects(bucket, tuple(names))


@pytest.fixture
def sse_guard_legacy(sse_guard_aws: MotoAWS, sse_guard_bucket: BucketFactory) -> LegacySeeder:
    """A seeder: ``sse_guard_legacy(keys=3) -> SeededObjects(bucket, keys)``."""
    return LegacySeeder(sse_guard_aws, sse_guard_bucket)


# -- the wire recorder ------------------------------------------------------------------

_VIRTUAL_HOST = re.compile(r"^(?P<bucket>.+)\.s3[.-](?:[a-z0-9-]+\.)*amazonaws\.com$")


def _bucket_and_key(service: str, url: str) -> tuple[str | None, str | None]:
    if service != "s3":
        return None, None
    parts = urlsplit(url)
    path = unquote(parts.path)
    match = _VIRTUAL_HOST.match(parts.hostname or "")
    if match:
        return match["bucket"], path[1:] or None
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket or None, key or None


@dataclass(frozen=True)
class SentRequest:
    """One request as botocore sent it (after signing): one per attempt, retries too.

    ``headers`` are lowercased; ``body`` is the bytes sent, or None when botocore
    streamed it (a file or an aws-chunked body). ``bucket``/``key`` are read from the
    URL (S3 only). The repr hides SSE-C keys.
    """

    service: str
    operation: str
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None = field(repr=False)
    bucket: str | None
    key: str | None

    @property
    def sse(self) -> dict[str, str]:
        """The headers that ask for server-side encryption (SSE-C key included)."""
        return {k: v for k, v in self.headers.items() if "server-side-encryption" in k}

    def __repr__(self) -> str:
        return (
            f"SentRequest({self.operation} {self.method} s3://{self.bucket}/{self.key} "
            f"sse={_redacted(self.sse)})"
            if self.service == "s3"
            else f"SentRequest({self.service} {self.operation} {self.method} {self.url})"
        )


def _redacted(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: ("<redacted>" if k in _SSE_C_KEY_HEADERS else v) for k, v in headers.items()}


_ALGORITHMS = {"SSE-S3": "AES256", "SSE-KMS": "aws:kms", "DSSE-KMS": "aws:kms:dsse"}


class WireRecorder:
    """Records every request sent through the sessions and clients it is attached to.

    Captured at ``before-send``, the last event before the bytes go out, so it sees what
    the guard injected and botocore signed (moto itself accepts almost anything).
    """

    def __init__(self) -> None:
        self.requests: list[SentRequest] = []
        self._lock = threading.Lock()
        self._attached: list[Any] = []
        self._unique_id = f"sse_guard.pytest_plugin.recorder.{uuid.uuid4().hex}"

    def attach(self, target: Any) -> Any:
        """Record ``target``: a boto3/botocore Session (its clients made from now on) or a client."""
        events = _events_of(target)
        events.register_first("before-send", self._record, unique_id=self._unique_id)
        self._attached.append(events)
        return target

    def detach(self) -> None:
        for events in self._attached:
            events.unregister("before-send", unique_id=self._unique_id)
        self._attached.clear()

    def _record(self, request: Any, event_name: str, **kwargs: Any) -> None:
        _, service, operation = [*event_name.split(".", 2), "", ""][:3]
        body = bytes(request.body) if isinstance(request.body, (bytes, bytearray)) else None
        headers = {
            k.lower(): (v.decode("latin-1") if isinstance(v, bytes) else str(v))
            for k, v in request.headers.items()
        }
        bucket, key = _bucket_and_key(service, request.url)
        sent = SentRequest(service, operation, request.method, request.url, headers, body, bucket, key)
        with self._lock:
            self.requests.append(sent)

    # -- queries ----------------------------------------------------------------------

    def of(
        self, operation: str, *, bucket: str | None = None, key: str | None = None, service: str = "s3"
    ) -> list[SentRequest]:
        """Every recorded attempt of ``operation`` (optionally on one bucket/key)."""
        with self._lock:
            found = list(self.requests)
        return [
            r
            for r in found
            if r.service == service
            and r.operation == operation
            and (bucket is None or r.bucket == bucket)
            and (key is None or r.key == key)
        ]

    def last(self, operation: str, *, bucket: str | None = None, key: str | None = None) -> SentRequest:
        """The last recorded ``operation`` (on ``bucket``/``key``); AssertionError if none."""
        found = self.of(operation, bucket=bucket, key=key)
        if not found:
            raise AssertionError(f"no {_what(operation, bucket, key)} was sent; sent: {self._summary()}")
        return found[-1]

    def one(self, operation: str, *, bucket: str | None = None, key: str | None = None) -> SentRequest:
        """The only recorded ``operation``; AssertionError if there are none or several."""
        found = self.of(operation, bucket=bucket, key=key)
        if len(found) != 1:
            raise AssertionError(
                f"expected one {_what(operation, bucket, key)}, found {len(found)}; sent: {self._summary()}"
            )
        return found[0]

    def sse_of(self, operation: str, *, bucket: str | None = None, key: str | None = None) -> dict[str, str]:
        """The SSE headers of the last ``operation`` sent (lowercased names)."""
        return self.last(operation, bucket=bucket, key=key).sse

    def assert_sse(
        self,
        operation: str,
        algorithm: str,
        *,
        kms_key_id: str | None = None,
        bucket_key: bool | None = None,
        bucket: str | None = None,
        key: str | None = None,
    ) -> SentRequest:
        """Assert the last ``operation`` carried ``algorithm`` (and key, bucket key).

        ``algorithm``: ``AES256``/``SSE-S3``, ``aws:kms``/``SSE-KMS``,
        ``aws:kms:dsse``/``DSSE-KMS`` or ``SSE-C``.
        """
        sent = self.last(operation, bucket=bucket, key=key)
        sse = sent.sse
        problems = []
        if algorithm == "SSE-C":
            if sse.get("x-amz-server-side-encryption-customer-algorithm") != "AES256":
                problems.append("no SSE-C key")
        else:
            wanted = _ALGORITHMS.get(algorithm, algorithm)
            if sse.get("x-amz-server-side-encryption") != wanted:
                problems.append(f"x-amz-server-side-encryption is not {wanted!r}")
        if kms_key_id is not None and sse.get("x-amz-server-side-encryption-aws-kms-key-id") != kms_key_id:
            problems.append(f"the KMS key is not {kms_key_id!r}")
        if bucket_key is not None:
            sent_bk = sse.get("x-amz-server-side-encryption-bucket-key-enabled", "").lower() == "true"
            if sent_bk != bucket_key:
                problems.append(f"bucket key enabled is not {bucket_key}")
        if problems:
            raise AssertionError(
                f"{_what(operation, sent.bucket, sent.key)}: {'; '.join(problems)}; "
                f"it carried {_redacted(sse) or 'no SSE headers'}"
            )
        return sent

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def _summary(self) -> list[str]:
        with self._lock:
            return [f"{r.operation} {r.bucket}/{r.key}" if r.service == "s3" else f"{r.service}:{r.operation}" for r in self.requests]


def _what(operation: str, bucket: str | None, key: str | None) -> str:
    where = f" s3://{bucket or '*'}/{key or '*'}" if bucket or key else ""
    return f"{operation}{where}"


def _events_of(target: Any) -> Any:
    import boto3
    import botocore.session

    if isinstance(target, boto3.session.Session):
        return target.events
    if isinstance(target, botocore.session.Session):
        return target.get_component("event_emitter")
    meta = getattr(target, "meta", None)
    events = getattr(meta, "events", None)
    if events is None:
        raise TypeError(f"cannot record {type(target).__name__}: pass a session or a client")
    return events


@pytest.fixture
def sse_guard_recorder() -> WireRecorder:
    """The ``WireRecorder`` attached to ``sse_guard_session`` (and so to ``sse_guard_s3``)."""
    return WireRecorder()


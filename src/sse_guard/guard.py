"""The Guard: registration on sessions and clients, and the state its handlers share.

One Guard per session or client. On a session it adds a mixin to every S3 client class
the session creates afterwards, so each new client binds its own handlers (botocore
copies a session's handlers into a client when the client is made, and handlers on the
session alone never learn which client is calling). Clients made before the session was
registered are not reached: register them one by one.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import os
import threading
import urllib.parse
import weakref
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import boto3
import botocore.session
from boto3.s3.transfer import TransferConfig
from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError

from . import handlers
from .bucket_defaults import BucketDefaultsCache, fetch_bucket_default
from .envelope.cipher import GCM_MAX_PLAINTEXT
from .envelope.handlers import LENGTH_HINT
from .errors import ConfigurationError, EncryptionError
from .policy import BucketDefault, Mode, Policy, is_kms_arn
from .settings import ClientSide

__all__ = ["Guard", "GuardStats", "register"]

logger = logging.getLogger("sse_guard")

_TRANSFER_METHODS = ("upload_file", "upload_fileobj", "download_file", "download_fileobj", "copy")
_UPLOAD_METHODS = ("upload_file", "upload_fileobj")
_MIXIN_EVENT = "creating-client-class.s3"
_MIXIN_ID = "sse_guard.client-mixin"

# Which Guard owns which event emitter: registering twice finds it here.
_owners: weakref.WeakKeyDictionary[Any, Guard] = weakref.WeakKeyDictionary()
# Re-entrant: a client collected while this thread holds it runs _forget, which takes it.
_owners_lock = threading.RLock()


@dataclass(frozen=True)
class GuardStats:
    """What a guard has done so far. ``lookups``: GetBucketEncryption calls made."""

    injected: int = 0
    refused: int = 0
    audited: int = 0
    left_alone: int = 0
    lookups: int = 0
    cache_hits: int = 0
    coalesced: int = 0
    lookup_failures: int = 0
    presign_unresolved: int = 0


class KmsKeyResolver:
    """Alias or key id -> key ARN, through DescribeKey, cached."""

    def __init__(self, client_factory: Callable[[], Any]) -> None:
        self._factory = client_factory
        self._client: Any = None
        self._lock = threading.Lock()
        self._arns: dict[str, str] = {}

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    def resolve(self, key_id: str) -> str:
        if is_kms_arn(key_id):
            return key_id
        with self._lock:
            if key_id in self._arns:
                return self._arns[key_id]
        try:
            arn = self.client().describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
        except (ClientError, BotoCoreError) as e:
            raise ConfigurationError(f"KMS key {key_id!r} does not resolve: {e}") from e
        with self._lock:
            self._arns[key_id] = arn
        return str(arn)

    def same_key(self, required_arn: str, given: str) -> bool:
        if given == required_arn:
            return True
        if not given.startswith(("alias/", "arn:")) and required_arn.endswith(f":key/{given}"):
            return True  # a bare key id in the same key's ARN
        try:
            return self.resolve(given) == required_arn
        except ConfigurationError:
            return False  # unknown keys never match: fail closed


class ClientBinding:
    """One guarded client: the handlers' view of it (weakly held)."""

    def __init__(self, guard: Guard, client: BaseClient) -> None:
        self.guard = guard
        self._client = weakref.ref(client)
        self.events = client.meta.events
        self.registered: list[tuple[str, str]] = []

    def client(self) -> BaseClient:
        client = self._client()
        if client is None:  # pragma: no cover - handlers only run while the client lives
            raise RuntimeError("guarded client is gone")
        return client

    def _cache_key(self, bucket: str) -> Hashable:
        client: Any = self.client()
        credentials = client._get_credentials()
        access_key = credentials.access_key if credentials is not None else None
        return (client.meta.endpoint_url, client.meta.region_name, access_key, bucket)

    def bucket_default(self, bucket: str, *, expected_owner: str | None = None) -> BucketDefault:
        return self.guard._cache.get(
            self._cache_key(bucket),
            lambda: fetch_bucket_default(self.client(), bucket, expected_owner=expected_owner),
        )

    def peek_bucket_default(self, bucket: str) -> BucketDefault | None:
        return self.guard._cache.peek(self._cache_key(bucket))


class Guard:
    """Keeps every write made through its clients encrypted as ``policy`` requires."""

    def __init__(self, policy: Policy, *, mode: Mode | None = None, kms_client: Any = None) -> None:
        self._given_policy = policy
        self.policy = policy
        self.mode: Mode = mode or policy.mode
        if self.mode not in ("inject", "enforce", "audit"):
            raise ConfigurationError(f"mode {self.mode!r} is not inject, enforce or audit")
        self._cache = BucketDefaultsCache(policy.cache_ttl_seconds)
        self._kms_client = kms_client
        self._keys = KmsKeyResolver(self._make_kms_client)
        self._counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        self._bindings: list[ClientBinding] = []
        self._sessions: list[botocore.session.Session] = []
        self._kms_factory: Callable[[], Any] | None = None
        self._prepared = False
        self.envelope, self._envelope_handlers = _envelope()

    # -- registration ------------------------------------------------------------------

    def register(self, target: Any) -> Guard:
        """Guard ``target``: a boto3.Session, a botocore Session or an S3 client."""
        if isinstance(target, boto3.session.Session):
            target = target._session
        if isinstance(target, botocore.session.Session):
            emitter = target.get_component("event_emitter")
            if self._claim(emitter):
                self._prepare(lambda: target.create_client("kms"))
                target.register(_MIXIN_EVENT, self._add_mixin, unique_id=_MIXIN_ID)
                self._sessions.append(target)
            return self
        if isinstance(target, BaseClient):
            if target.meta.service_model.service_name != "s3":
                raise ConfigurationError(
                    f"sse_guard guards S3 clients, not {target.meta.service_model.service_name}"
                )
            if self._claim(target.meta.events):
                self._prepare(lambda: kms_client_for(target))
                self._bind(target)
            return self
        raise ConfigurationError(
            f"cannot guard {type(target).__name__}: pass a boto3.Session, a botocore Session or an S3 client"
        )

    def unregister(self) -> None:
        """Remove every handler this guard added, from every session and client."""
        for session in self._sessions:
            session.unregister(_MIXIN_EVENT, unique_id=_MIXIN_ID)
            _release(session.get_component("event_emitter"), self)
        self._sessions.clear()
        with _owners_lock:
            bindings, self._bindings = self._bindings, []
        for binding in bindings:
            for event, uid in binding.registered:
                binding.events.unregister(event, unique_id=uid)
            client = binding._client()
            if client is not None:
                for name in _TRANSFER_METHODS:
                    client.__dict__.pop(name, None)
            _release(binding.events, self)

    def _claim(self, emitter: Any) -> bool:
        """True if this guard must register on ``emitter``; False if it already has."""
        with _owners_lock:
            owner = _owners.get(emitter)
            if owner is self:
                return False
            if owner is not None:
                raise ConfigurationError(
                    "this target is already guarded by another Guard; call its unregister() first"
                )
            _owners[emitter] = self
            return True

    def _prepare(self, kms_factory: Callable[[], Any]) -> None:
        """Once: resolve KMS aliases to ARNs and bind KMS keyrings, failing early."""
        if self._kms_factory is None:
            self._kms_factory = kms_factory
        if self._prepared:
            return
        arns = {key_id: self._keys.resolve(key_id) for key_id in sorted(self.policy.kms_key_ids_to_resolve())}
        policy = self.policy.with_kms_key_arns(arns) if arns else self.policy

        def bind(setting: ClientSide) -> ClientSide:
            keyring = setting.keyring
            if getattr(keyring, "needs_client", False):
                return replace(setting, keyring=keyring.with_client(self._keys.client()))  # type: ignore[attr-defined]
            return setting

        self.policy = policy.map_client_side(bind)
        self._prepared = True

    def _make_kms_client(self) -> Any:
        if self._kms_client is not None:
            return self._kms_client
        if self._kms_factory is None:  # pragma: no cover
            raise ConfigurationError("no KMS client: register the guard on a session or client first")
        return self._kms_factory()

    def _add_mixin(self, **kwargs: Any) -> None:
        base_classes: list[type] = kwargs["base_classes"]
        guard = self

        class GuardedClient(BaseClient):
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, **kw)
                guard._bind(self)

        base_classes.insert(0, GuardedClient)

    def _bind(self, client: BaseClient) -> None:
        binding = ClientBinding(self, client)
        # Without a client-side rule the envelope handlers would only ever return early:
        # leaving them out keeps a guarded write within a few percent of a plain one.
        envelope = self._envelope_handlers if self.policy.uses_client_side() else ()
        for event, fn in (*handlers.HANDLERS, *envelope):
            uid = f"sse_guard.{fn.__module__}.{fn.__name__}.{event}"
            state = self.envelope if fn.__module__.startswith("sse_guard.envelope") else binding
            binding.events.register(event, functools.partial(fn, state), unique_id=uid)
            binding.registered.append((event, uid))
        for name in _TRANSFER_METHODS:
            method = getattr(client, name, None)
            if method is not None:
                client.__dict__[name] = _classic_transfer(method, self)
        with _owners_lock:
            _owners[binding.events] = self
            self._bindings.append(binding)
        # A long-lived guarded session may make many short-lived clients: forget each
        # one's binding with it, or the list would only grow.
        weakref.finalize(client, self._forget, binding)

    def _forget(self, binding: ClientBinding) -> None:
        with _owners_lock:
            if binding in self._bindings:
                self._bindings.remove(binding)

    # -- what the handlers use ------------------------------------------------------------

    def policy_source_equal(self, policy: Policy, mode: Mode | None) -> bool:
        """Whether ``register(target, policy, mode=mode)`` asks for what this guard does."""
        return self._given_policy == policy and self.mode == (mode or policy.mode)

    def same_kms_key(self, required_arn: str, given: str) -> bool:
        return self._keys.same_key(required_arn, given)

    def count(self, name: str) -> None:
        with self._counts_lock:
            self._counts[name] = self._counts.get(name, 0) + 1

    @property
    def stats(self) -> GuardStats:
        cache = self._cache.stats()
        with self._counts_lock:
            counts = dict(self._counts)
        return GuardStats(lookups=cache.lookups, cache_hits=cache.hits, coalesced=cache.coalesced, **counts)

    def invalidate(self, bucket: str | None = None) -> int:
        """Forget cached bucket settings (all, or one bucket's). Returns how many."""
        if bucket is None:
            return self._cache.invalidate()
        return self._cache.invalidate(lambda k: isinstance(k, tuple) and k[-1] == bucket)

    def __repr__(self) -> str:
        return f"<Guard mode={self.mode} rules={len(self.policy.rules)} clients={len(self._bindings)}>"


def _release(emitter: Any, guard: Guard) -> None:
    with _owners_lock:
        if _owners.get(emitter) is guard:
            del _owners[emitter]


def _classic_transfer(method: Callable[..., Any], guard: Guard) -> Callable[..., Any]:
    """Managed transfers on the classic transfer manager, whose calls fire our handlers.

    boto3 picks the CRT transfer client when awscrt is installed on instance types it
    deems optimised, and that client sends requests without firing any botocore event.
    """
    signature = inspect.signature(method)
    upload = method.__name__ in _UPLOAD_METHODS

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.arguments["Config"] = _force_classic(bound.arguments.get("Config"))
        if upload:
            _prepare_client_side_upload(guard, bound.arguments)
        return method(*bound.args, **bound.kwargs)

    return wrapper


def _prepare_client_side_upload(guard: Guard, arguments: dict[str, Any]) -> None:
    """Refuse an upload too large for one GCM stream before its first part is sent, and
    announce the plaintext length so that the tag can travel in the last part.

    CreateMultipartUpload carries no size, so the envelope handlers alone would notice
    the limit only at the part that crosses it, and could not tell the last part from
    the others when it is full-sized.
    """
    bucket, key = arguments.get("Bucket"), arguments.get("Key")
    if not isinstance(bucket, str) or not isinstance(key, str):
        return
    if not isinstance(guard.policy.rule_for(bucket, key), ClientSide):
        return
    size = _upload_size(arguments)
    if size is None:
        return
    if size > GCM_MAX_PLAINTEXT:
        raise EncryptionError(
            f"s3://{bucket}/{key}: {size} bytes exceed AES-GCM's 64 GiB limit for one "
            "client-side encrypted object; nothing was sent"
        )
    if guard.mode != "audit":  # audit writes go out as they are: no hint to remove
        extra = dict(arguments.get("ExtraArgs") or {})
        extra["Metadata"] = {**(extra.get("Metadata") or {}), LENGTH_HINT: str(size)}
        arguments["ExtraArgs"] = extra


def _upload_size(arguments: Mapping[str, Any]) -> int | None:
    if "Filename" in arguments:
        try:
            return os.path.getsize(arguments["Filename"])
        except (OSError, TypeError):
            return None  # s3transfer reports a missing file itself
    fileobj = arguments.get("Fileobj")
    if fileobj is None or not getattr(fileobj, "seekable", lambda: False)():
        return None
    here = fileobj.tell()
    end = fileobj.seek(0, os.SEEK_END)
    fileobj.seek(here)
    return int(end - here)


def _force_classic(config: TransferConfig | None) -> TransferConfig:
    if config is None:
        return TransferConfig(preferred_transfer_client="classic")
    preferred = str(getattr(config, "preferred_transfer_client", "auto")).lower()
    if preferred == "crt":
        raise ConfigurationError(
            "the CRT transfer client sends requests without botocore's event hooks, so sse_guard "
            "cannot guard them; use preferred_transfer_client='classic' (or 'auto')"
        )
    if preferred == "classic":
        return config
    forced = copy.copy(config)
    forced.__dict__["preferred_transfer_client"] = "classic"
    return forced


def kms_client_for(client: Any) -> Any:
    """A KMS client with the S3 client's credentials, region and, for a custom endpoint
    (LocalStack, moto server: one port for every service), its endpoint.
    Pass ``kms_client=`` to ``register`` when KMS lives elsewhere."""
    credentials = client._get_credentials()
    kwargs: dict[str, Any] = {"region_name": client.meta.region_name}
    host = urllib.parse.urlsplit(client.meta.endpoint_url).hostname or ""
    if not host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws")):
        kwargs["endpoint_url"] = client.meta.endpoint_url
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        kwargs.update(
            aws_access_key_id=frozen.access_key,
            aws_secret_access_key=frozen.secret_key,
            aws_session_token=frozen.token,
        )
    return botocore.session.get_session().create_client("kms", **kwargs)


def register(target: Any, policy: Policy | None = None, *, mode: Mode | None = None, kms_client: Any = None) -> Guard:
    """Guard every S3 write made through ``target``; return the Guard.

    ``target`` is a ``boto3.Session`` (every S3 client and resource made from it from now
    on is guarded; clients made before are not: register those one by one), a botocore
    Session, or an S3 client. ``policy`` None reads ``SSE_GUARD_POLICY`` or
    ``[tool.sse-guard]`` in ./pyproject.toml, else follows each bucket's default
    encryption. ``mode`` overrides the policy's. ``kms_client`` is used to resolve KMS
    aliases and for KMS keyrings; by default one is made from ``target``.

    Registering the same target twice returns its guard unchanged.
    """
    if policy is None:
        policy = Policy.discover()
    emitter = _emitter_of(target)
    if emitter is not None:
        with _owners_lock:
            owner = _owners.get(emitter)
        if owner is not None and owner.policy_source_equal(policy, mode):
            return owner
    return Guard(policy, mode=mode, kms_client=kms_client).register(target)


def _emitter_of(target: Any) -> Any:
    if isinstance(target, boto3.session.Session):
        target = target._session
    if isinstance(target, botocore.session.Session):
        return target.get_component("event_emitter")
    if isinstance(target, BaseClient):
        return target.meta.events
    return None


def _envelope() -> tuple[Any, tuple[tuple[str, Any], ...]]:
    try:
        from .envelope.handlers import HANDLERS, EnvelopeState
    except ImportError:  # TODO(integration): the envelope package lands separately
        return None, ()
    return EnvelopeState(), HANDLERS

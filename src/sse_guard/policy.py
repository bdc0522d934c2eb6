"""The policy: which encryption every write must carry, and how to decide a write.

Pure: no I/O beyond reading the policy file itself, no boto3. ``decide`` is a function of
(policy, operation, bucket, key, what the caller gave, the bucket's default) and is the
whole of the guard's judgement; the handlers only feed it and apply its answer.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import fnmatch
import functools
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from .errors import ConfigurationError
from .settings import (
    DSSEKMS,
    FOLLOW_BUCKET,
    SSEC,
    SSEKMS,
    SSES3,
    ClientSide,
    Encryption,
    FollowBucket,
    ServerSide,
    encode_context,
    to_request_params,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "BucketDefault",
    "Decision",
    "Given",
    "Mode",
    "Policy",
    "Rule",
    "decide",
    "satisfies",
]

Mode = Literal["inject", "enforce", "audit"]
MODES: tuple[str, ...] = ("inject", "enforce", "audit")
LookupErrorAction = Literal["deny", "fallback"]

ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse", "SSE-C", "client-side")
FALLBACK_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")


def is_kms_arn(key_id: str) -> bool:
    return key_id.startswith("arn:") and ":key/" in key_id


@dataclass(frozen=True)
class Rule:
    """Objects in buckets matching ``bucket`` (a glob) whose key starts with ``prefix``."""

    bucket: str
    encryption: Encryption
    prefix: str = ""
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ConfigurationError("a rule's bucket glob must not be empty")
        object.__setattr__(self, "_pattern", re.compile(fnmatch.translate(self.bucket)))

    def matches(self, bucket: str, key: str) -> bool:
        return key.startswith(self.prefix) and self._pattern.match(bucket) is not None


@dataclass(frozen=True)
class BucketDefault:
    """What GetBucketEncryption says of one bucket. ``encryption`` None: no configuration."""

    encryption: ServerSide | None
    blocks_sse_c: bool = False


@dataclass(frozen=True)
class Policy:
    """Rules (first match wins), a default, a fallback, a mode and the lookup-error rule."""

    rules: tuple[Rule, ...] = ()
    default: Encryption | FollowBucket = FOLLOW_BUCKET
    fallback: ServerSide = SSES3()  # noqa: RUF009 - frozen, so sharing it is safe
    mode: Mode = "inject"
    on_lookup_error: LookupErrorAction = "deny"
    cache_ttl_seconds: float = 300.0
    # Presigning is offline by default: a cold bucket setting is not fetched for it.
    presign_lookup: bool = False
    source: str = "<dict>"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigurationError(f"{self.source}: mode: {self.mode!r} is not one of {MODES}")
        if self.on_lookup_error not in ("deny", "fallback"):
            raise ConfigurationError(
                f"{self.source}: on_lookup_error: {self.on_lookup_error!r} is not deny or fallback"
            )
        if not self.cache_ttl_seconds >= 0:
            raise ConfigurationError(f"{self.source}: cache_ttl_seconds must be >= 0")

    # -- loading ---------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>", base_dir: Path | None = None) -> Policy:
        """Build a policy from the structure of the TOML file (see the README)."""
        return _parse_policy(data, source=source, base_dir=base_dir or Path.cwd())

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Policy:
        """Read a policy TOML file, or the ``[tool.sse-guard]`` table of a pyproject.toml."""
        p = Path(path)
        try:
            with p.open("rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise ConfigurationError(f"{p}: cannot read policy file: {e.strerror}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigurationError(f"{p}: not valid TOML: {e}") from e
        if p.name == "pyproject.toml":
            table = data.get("tool", {}).get("sse-guard")
            if table is None:
                raise ConfigurationError(f"{p}: has no [tool.sse-guard] table")
            data = table
        return _parse_policy(data, source=str(p), base_dir=p.parent)

    @classmethod
    def discover(cls, cwd: Path | None = None) -> Policy:
        """``SSE_GUARD_POLICY``, else ``[tool.sse-guard]`` in ./pyproject.toml, else follow-bucket."""
        env = os.environ.get("SSE_GUARD_POLICY")
        if env:
            return cls.from_file(env)
        pyproject = (cwd or Path.cwd()) / "pyproject.toml"
        if pyproject.is_file():
            with pyproject.open("rb") as f:
                try:
                    data = tomllib.load(f)
                except tomllib.TOMLDecodeError as e:
                    raise ConfigurationError(f"{pyproject}: not valid TOML: {e}") from e
            if "sse-guard" in data.get("tool", {}):
                return cls.from_file(pyproject)
        return cls()

    # -- queries -----------------------------------------------------------------------

    def rule_for(self, bucket: str, key: str) -> Encryption | FollowBucket:
        """The first matching rule's encryption, else the default. No I/O."""
        for rule in self.rules:
            if rule.matches(bucket, key):
                return rule.encryption
        return self.default

    def uses_client_side(self) -> bool:
        return isinstance(self.default, ClientSide) or any(isinstance(r.encryption, ClientSide) for r in self.rules)

    def kms_key_ids_to_resolve(self) -> set[str]:
        """SSE-KMS/DSSE-KMS key ids given as aliases or bare ids.

        S3 resolves those in the *requester's* account, so a cross-account writer would
        encrypt under the wrong key: the guard turns them into ARNs once, at registration.
        """
        found: set[str] = set()
        for enc in [r.encryption for r in self.rules] + [self.default, self.fallback]:
            if isinstance(enc, (SSEKMS, DSSEKMS)) and enc.key_id and not is_kms_arn(enc.key_id):
                found.add(enc.key_id)
        return found

    def with_kms_key_arns(self, arns: Mapping[str, str]) -> Policy:
        """A copy with every key id in ``arns`` replaced by its ARN."""

        def swap(enc: Any) -> Any:
            if isinstance(enc, (SSEKMS, DSSEKMS)) and enc.key_id is not None and enc.key_id in arns:
                return dataclasses.replace(enc, key_id=arns[enc.key_id])
            return enc

        return dataclasses.replace(
            self,
            rules=tuple(dataclasses.replace(r, encryption=swap(r.encryption)) for r in self.rules),
            default=swap(self.default),
            fallback=swap(self.fallback),
        )

    def map_client_side(self, fn: Callable[[ClientSide], ClientSide]) -> Policy:
        """A copy with ``fn`` applied to every client-side setting (keyring binding)."""

        def swap(enc: Any) -> Any:
            return fn(enc) if isinstance(enc, ClientSide) else enc

        return dataclasses.replace(
            self,
            rules=tuple(dataclasses.replace(r, encryption=swap(r.encryption)) for r in self.rules),
            default=swap(self.default),
        )


# -- deciding one write --------------------------------------------------------------------


@dataclass(frozen=True)
class Given:
    """The encryption parameters the caller put on a request, as given (partial)."""

    algorithm: str | None = None  # ServerSideEncryption value
    kms_key_id: str | None = None
    bucket_key: bool | None = None
    context: str | None = None  # SSEKMSEncryptionContext, base64 JSON as sent
    sse_c_key_md5: str | None = None  # present iff the caller gave SSE-C

    @property
    def empty(self) -> bool:
        return self.algorithm is None and self.sse_c_key_md5 is None

    def describe(self) -> str:
        if self.sse_c_key_md5 is not None:
            return f"SSE-C (key md5 {self.sse_c_key_md5})"
        if self.algorithm is None:
            return "no encryption"
        if self.kms_key_id:
            return f"{self.algorithm} (key {self.kms_key_id})"
        return self.algorithm


@dataclass(frozen=True)
class Decision:
    """What one write needs. The guard applies it according to its mode.

    ``add``: parameters to add (never overwriting the caller's). ``shortfall``: how the
    caller's explicit parameters fall short (enforce refuses, inject leaves them).
    ``impossible``: the write cannot be made compliant at all (refused in every mode but
    audit). ``required`` is what the policy asks for.
    """

    required: Encryption
    add: Mapping[str, Any] = field(default_factory=dict)
    shortfall: str | None = None
    impossible: str | None = None


def is_directory_bucket(bucket: str) -> bool:
    return bucket.endswith("--x-s3")


def is_access_point(bucket: str) -> bool:
    """Access-point ARNs and aliases, Object Lambda aliases: no bucket lookup is possible."""
    return bucket.startswith("arn:") or bucket.endswith("-s3alias") or bucket.endswith("--ol-s3")


def satisfies(required: Encryption, actual: Given, *, same_key: Callable[[str, str], bool]) -> str | None:
    """Why ``actual`` falls short of ``required``, or None when it meets it.

    Stronger is accepted: DSSE-KMS meets SSE-KMS under the same key, and any KMS
    encryption meets SSE-S3. ``same_key`` compares two KMS key ids (alias-aware).
    """
    if isinstance(required, ClientSide):
        return None  # the body is encrypted client-side; server-side params are extra
    if isinstance(required, SSEC):
        if actual.sse_c_key_md5 is None:
            return f"SSE-C is required, the request asks for {actual.describe()}"
        if actual.sse_c_key_md5 != required.key_md5:
            return "SSE-C is required with another key than the request's"
        return None
    if actual.sse_c_key_md5 is not None:
        return f"{required.describe()} is required, the request asks for SSE-C"
    alg = actual.algorithm
    if isinstance(required, SSES3):
        if alg in ("AES256", "aws:kms", "aws:kms:dsse"):
            return None
        return f"SSE-S3 is required, the request asks for {actual.describe()}"
    accepted = ("aws:kms", "aws:kms:dsse") if isinstance(required, SSEKMS) else ("aws:kms:dsse",)
    if alg not in accepted:
        return f"{required.describe()} is required, the request asks for {actual.describe()}"
    if required.key_id is not None:
        if actual.kms_key_id is None:
            return None  # completed from the policy before sending (see _completion)
        if not same_key(required.key_id, actual.kms_key_id):
            return f"{required.describe()} is required, the request asks for {actual.describe()}"
    return None


def decide(
    bucket: str,
    given: Given,
    required: Encryption,
    *,
    bucket_default: BucketDefault | None = None,
    same_key: Callable[[str, str], bool] = lambda a, b: a == b,
) -> Decision:
    """Decide one PutObject/CopyObject/CreateMultipartUpload (server-side parameters).

    ``required`` is already resolved (see ``resolve_required``); ``bucket_default`` is
    passed when known, for its SSE-C block.
    """
    if isinstance(required, ClientSide):
        return Decision(required)
    if is_directory_bucket(bucket) and isinstance(required, (DSSEKMS, SSEC)):
        return Decision(
            required,
            impossible=f"directory buckets support only SSE-S3 and SSE-KMS, not {required.label}",
        )
    blocked = bucket_default is not None and bucket_default.blocks_sse_c
    if blocked and isinstance(required, SSEC):
        return Decision(
            required, impossible=f"the policy asks for SSE-C but bucket {bucket} blocks SSE-C writes"
        )
    if given.empty:
        return _whole_rule(required)
    shortfall = satisfies(required, given, same_key=same_key)
    if blocked and given.sse_c_key_md5 is not None:
        shortfall = f"bucket {bucket} blocks SSE-C writes"
    if shortfall is not None:
        return Decision(required, shortfall=shortfall)
    return Decision(required, add=_completion(required, given))


@functools.lru_cache(maxsize=256)
def _whole_rule(required: ServerSide) -> Decision:
    # Settings are frozen and few: the same Decision serves every write they apply to.
    return Decision(required, add=MappingProxyType(to_request_params(required)))


def _completion(required: Encryption, given: Given) -> dict[str, Any]:
    """Parameters the caller left out of an otherwise matching request.

    s3transfer cannot carry ``BucketKeyEnabled``, and ``aws:kms`` without a key id would
    silently use the AWS managed key instead of the policy's.
    """
    add: dict[str, Any] = {}
    if isinstance(required, (SSEKMS, DSSEKMS)) and given.algorithm == (
        "aws:kms" if isinstance(required, SSEKMS) else "aws:kms:dsse"
    ):
        if given.kms_key_id is None and required.key_id:
            add["SSEKMSKeyId"] = required.key_id
        if isinstance(required, SSEKMS) and given.bucket_key is None and required.bucket_key is not None:
            add["BucketKeyEnabled"] = required.bucket_key
        if given.context is None and required.context:
            add["SSEKMSEncryptionContext"] = encode_context(required.context)
    return add


def resolve_required(policy: Policy, rule: Encryption | FollowBucket, bucket_default: BucketDefault | None) -> Encryption:
    """The encryption that applies once the bucket default is known (None: none configured)."""
    if not isinstance(rule, FollowBucket):
        return rule
    if bucket_default is None or bucket_default.encryption is None:
        return policy.fallback
    return bucket_default.encryption


# -- parsing the policy file ---------------------------------------------------------------

_TOP_KEYS = {"mode", "default", "on_lookup_error", "cache_ttl_seconds", "fallback", "rules", "presign_lookup"}
_SETTING_KEYS = {
    "algorithm",
    "kms_key_id",
    "bucket_key",
    "encryption_context",
    "key_file",
    "key_env",
    "format",
    "keyring",
    "instruction_file",
    "commitment_policy",
    "unsafe_allow_legacy",
    "unsafe_allow_plaintext",
    "unsafe_allow_ranged_get",
    "unsafe_unauthenticated_streaming",
}
_RULE_KEYS = _SETTING_KEYS | {"bucket", "prefix"}


def _parse_policy(data: Mapping[str, Any], *, source: str, base_dir: Path) -> Policy:
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{source}: a policy must be a table")
    _no_unknown(data, _TOP_KEYS, source)
    default_raw = data.get("default", "follow-bucket")
    default: Encryption | FollowBucket
    if default_raw == "follow-bucket":
        default = FOLLOW_BUCKET
    elif isinstance(default_raw, Mapping):
        _no_unknown(default_raw, _SETTING_KEYS, f"{source}: default")
        default = _parse_setting(default_raw, f"{source}: default", base_dir)
    else:
        raise ConfigurationError(f"{source}: default: expected 'follow-bucket' or a table, got {default_raw!r}")

    fallback: ServerSide = SSES3()
    if "fallback" in data:
        where = f"{source}: fallback"
        raw = _table(data["fallback"], where)
        _no_unknown(raw, {"algorithm", "kms_key_id", "bucket_key", "encryption_context"}, where)
        if raw.get("algorithm") not in FALLBACK_ALGORITHMS:
            raise ConfigurationError(
                f"{where}.algorithm: {raw.get('algorithm')!r} is not one of {FALLBACK_ALGORITHMS}"
            )
        parsed = _parse_setting(raw, where, base_dir)
        assert isinstance(parsed, (SSES3, SSEKMS, DSSEKMS))
        fallback = parsed

    rules_raw = data.get("rules", [])
    if not isinstance(rules_raw, list):
        raise ConfigurationError(f"{source}: rules: expected an array of tables ([[rules]])")
    rules = []
    for i, raw in enumerate(rules_raw):
        where = f"{source}: rules[{i}]"
        raw = _table(raw, where)
        _no_unknown(raw, _RULE_KEYS, where)
        bucket = raw.get("bucket")
        if not isinstance(bucket, str) or not bucket:
            raise ConfigurationError(f"{where}.bucket: a non-empty bucket glob is required")
        prefix = raw.get("prefix", "")
        if not isinstance(prefix, str):
            raise ConfigurationError(f"{where}.prefix: expected a string")
        rules.append(Rule(bucket=bucket, prefix=prefix, encryption=_parse_setting(raw, where, base_dir)))

    ttl = data.get("cache_ttl_seconds", 300)
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl < 0:
        raise ConfigurationError(f"{source}: cache_ttl_seconds: expected a number >= 0, got {ttl!r}")
    presign_lookup = data.get("presign_lookup", False)
    if not isinstance(presign_lookup, bool):
        raise ConfigurationError(f"{source}: presign_lookup: expected true or false")
    return Policy(
        rules=tuple(rules),
        default=default,
        fallback=fallback,
        mode=data.get("mode", "inject"),
        on_lookup_error=data.get("on_lookup_error", "deny"),
        cache_ttl_seconds=float(ttl),
        presign_lookup=presign_lookup,
        source=source,
    )


def _table(raw: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{where}: expected a table, got {type(raw).__name__}")
    return raw


def _no_unknown(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigurationError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _parse_setting(raw: Mapping[str, Any], where: str, base_dir: Path) -> Encryption:
    alg = raw.get("algorithm")
    if alg not in ALGORITHMS:
        raise ConfigurationError(f"{where}.algorithm: {alg!r} is not one of {', '.join(ALGORITHMS)}")
    allowed = {
        "AES256": {"algorithm"},
        "aws:kms": {"algorithm", "kms_key_id", "bucket_key", "encryption_context"},
        "aws:kms:dsse": {"algorithm", "kms_key_id", "encryption_context"},
        "SSE-C": {"algorithm", "key_file", "key_env"},
        "client-side": {
            "algorithm",
            "format",
            "keyring",
            "encryption_context",
            "instruction_file",
            "commitment_policy",
            "unsafe_allow_legacy",
            "unsafe_allow_plaintext",
            "unsafe_allow_ranged_get",
            "unsafe_unauthenticated_streaming",
        },
    }[alg]
    extra = sorted((set(raw) & _SETTING_KEYS) - allowed)
    if extra:
        raise ConfigurationError(f"{where}.{extra[0]}: not valid with algorithm {alg!r}")
    context = raw.get("encryption_context")
    if context is not None and (
        not isinstance(context, Mapping) or not all(isinstance(v, str) for v in context.values())
    ):
        raise ConfigurationError(f"{where}.encryption_context: expected a table of strings")
    key_id = raw.get("kms_key_id")
    if key_id is not None and (not isinstance(key_id, str) or not key_id):
        raise ConfigurationError(f"{where}.kms_key_id: expected a key ARN, id or alias")
    if alg == "AES256":
        return SSES3()
    if alg == "aws:kms":
        bucket_key = raw.get("bucket_key")
        if bucket_key is not None and not isinstance(bucket_key, bool):
            raise ConfigurationError(f"{where}.bucket_key: expected true or false")
        return SSEKMS.of(key_id, bucket_key=bucket_key, encryption_context=context)
    if alg == "aws:kms:dsse":
        return DSSEKMS.of(key_id, encryption_context=context)
    if alg == "SSE-C":
        return SSEC(_load_sse_c_key(raw, where, base_dir))
    return _parse_client_side(raw, where, base_dir, context)


def _load_sse_c_key(raw: Mapping[str, Any], where: str, base_dir: Path) -> bytes:
    if ("key_file" in raw) == ("key_env" in raw):
        raise ConfigurationError(f"{where}: SSE-C needs exactly one of key_file or key_env")
    if "key_file" in raw:
        path = base_dir / str(raw["key_file"])
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ConfigurationError(f"{where}.key_file: cannot read {path}: {e.strerror}") from e
        field_name = "key_file"
    else:
        value = os.environ.get(str(raw["key_env"]))
        if not value:
            raise ConfigurationError(f"{where}.key_env: environment variable {raw['key_env']} is not set")
        data = value.encode()
        field_name = "key_env"
    if len(data) == 32:
        return data
    try:
        decoded = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != 32:
        raise ConfigurationError(f"{where}.{field_name}: an SSE-C key must be 32 raw bytes or their base64")
    return decoded


def _parse_client_side(raw: Mapping[str, Any], where: str, base_dir: Path, context: Any) -> ClientSide:
    fmt = raw.get("format", "v3")
    if fmt not in ("v3", "v2"):
        raise ConfigurationError(f"{where}.format: {fmt!r} is not v3 or v2")
    if "keyring" not in raw:
        raise ConfigurationError(f"{where}.keyring: client-side encryption needs a keyring")
    keyring_raw = _table(raw["keyring"], f"{where}.keyring")
    from .envelope.keyrings import keyring_from_config

    try:
        keyring = keyring_from_config(keyring_raw, base_dir=base_dir)
    except ConfigurationError as e:
        raise ConfigurationError(f"{where}.keyring: {e}") from e
    flags = {}
    for name in (
        "instruction_file",
        "unsafe_allow_legacy",
        "unsafe_allow_plaintext",
        "unsafe_allow_ranged_get",
        "unsafe_unauthenticated_streaming",
    ):
        value = raw.get(name, False)
        if not isinstance(value, bool):
            raise ConfigurationError(f"{where}.{name}: expected true or false")
        flags[name] = value
    commitment = raw.get("commitment_policy", "require-encrypt-require-decrypt")
    if commitment not in (
        "require-encrypt-require-decrypt",
        "require-encrypt-allow-decrypt",
        "forbid-encrypt-allow-decrypt",
    ):
        raise ConfigurationError(f"{where}.commitment_policy: {commitment!r} is not a known policy")
    return ClientSide(
        keyring=keyring,
        format=fmt,
        context=tuple(sorted((context or {}).items())),
        commitment_policy=commitment,
        **flags,
    )

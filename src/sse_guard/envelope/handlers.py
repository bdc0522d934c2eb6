"""botocore event handlers that apply client-side envelope encryption to S3 calls.

The guard registers each ``(event, function)`` of :data:`HANDLERS` on a client as
``functools.partial(function, state)`` where ``state`` is the guard's
:class:`EnvelopeState`. Its own ``provide-client-params`` handler runs first and puts
the resolved settings for the call's (Bucket, Key) in ``context["sse_guard_encryption"]``
and the S3 client making the call in ``context["sse_guard_client"]`` (needed for the
calls these handlers make themselves: instruction files, the tag part, aborts). Every
handler here does nothing unless that settings value is a ``ClientSide``.

The calls these handlers make themselves run with :data:`_INTERNAL` set, so that the
handlers let them through untouched (they are nested on the same thread).
"""

from __future__ import annotations

import base64
import collections
import contextvars
import hashlib
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, cast

import urllib3.exceptions
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
)
from botocore.response import StreamingBody

from ..errors import ConfigurationError, EncryptionError
from ..settings import ClientSide
from ._errors import TransportFault, decryption_failure, translate_decryption_errors
from .cipher import (
    BLOCK,
    GCM_MAX_PLAINTEXT,
    READ_SIZE,
    TAG_BYTES,
    ContentKey,
    CtrRangeReader,
    EncryptingStream,
    PlaintextSource,
    UnauthenticatedReader,
    decrypt_cbc_to_spool,
    decrypt_gcm_to_spool,
)
from .core import Sealed, open_header, seal
from .format import (
    INSTRUCTION_SUFFIX,
    decode_header,
    encode_header,
    has_envelope_metadata,
    is_gcm_metadata,
    needs_instruction_file,
)
from .multipart import MultipartEncryption
from .spool import ConsumingReader, MemorySpool, spool_pread

__all__ = ["HANDLERS", "EnvelopeState"]

log = logging.getLogger(__name__)

SETTINGS_KEY = "sse_guard_encryption"
CLIENT_KEY = "sse_guard_client"
# Java's marker on instruction files; the official clients write it too.
INSTRUCTION_MARKER = "x-amz-crypto-instr-file"

_INTERNAL: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "sse_guard_envelope_internal", default=False
)

_PLAINTEXT_DESCRIBING = (
    "ContentMD5",
    "ContentLength",
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
)
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

UploadId = tuple[str, str, str]

# Metadata entry by which the transfer wrapper announces a managed upload's plaintext
# length to CreateMultipartUpload (so the tag can ride in the last part); it is removed
# before the request is built.
LENGTH_HINT = "sse-guard-plaintext-length"


@dataclass
class _Upload:
    """One client-side multipart upload in progress."""

    stream: MultipartEncryption | None  # None: a copy whose parts are ciphertext already
    instruction: dict[str, str] | None
    checksum_algorithm: str | None
    source_length: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _VerifiedCopy:
    """A whole object, decrypted and authenticated once, serving several ranged GETs."""

    spool: IO[bytes]
    size: int
    response: dict[str, Any]
    expires: float
    served: int = 0
    readers: int = 0
    evicted: bool = False


class EnvelopeState:
    """Per-guard mutable state of the envelope handlers.

    ``order_timeout``: how long a multipart part waits, without progress, for the
    previous one to be encrypted. ``verified_ttl``: how long one authenticated decryption may serve the
    ranged GETs of a managed download. ``client``: the S3 client used for the handlers'
    own calls when the context does not name one.
    """

    def __init__(
        self,
        *,
        client: Any = None,
        order_timeout: float = 60.0,
        verified_ttl: float = 120.0,
        clock: Any = time.monotonic,
    ) -> None:
        self.client = client
        self.order_timeout = order_timeout
        self.verified_ttl = verified_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._uploads: dict[UploadId, _Upload] = {}
        self._verified: dict[tuple[str, ...], _VerifiedCopy] = {}
        self._fetching: dict[tuple[str, ...], threading.Event] = {}

    @property
    def uploads_in_progress(self) -> int:
        with self._lock:
            return len(self._uploads)

    def _upload(self, ident: UploadId) -> _Upload | None:
        with self._lock:
            return self._uploads.get(ident)

    def _forget(self, ident: UploadId) -> None:
        with self._lock:
            self._uploads.pop(ident, None)


# -- helpers ------------------------------------------------------------------------------


def _settings(context: Mapping[str, Any] | None) -> ClientSide | None:
    if context is None or _INTERNAL.get():
        return None
    value = context.get(SETTINGS_KEY)
    return value if isinstance(value, ClientSide) else None


def _client(state: EnvelopeState, context: Mapping[str, Any]) -> Any:
    client = context.get(CLIENT_KEY) or state.client
    if client is None:
        raise ConfigurationError(
            "client-side encryption needs the S3 client in context['sse_guard_client']"
        )
    return client


@contextmanager
def _internal() -> Iterator[None]:
    token = _INTERNAL.set(True)
    try:
        yield
    finally:
        _INTERNAL.reset(token)


def _status(http_response: Any) -> int:
    return int(getattr(http_response, "status_code", 0) or 0)


def _drop_plaintext_checksums(params: dict[str, Any]) -> None:
    # They describe the plaintext; botocore recomputes the checksum (ChecksumAlgorithm
    # is kept) over the ciphertext that is actually sent.
    for name in _PLAINTEXT_DESCRIBING:
        params.pop(name, None)


def pop_length_hint(params: dict[str, Any]) -> int | None:
    """Take the transfer wrapper's plaintext length out of the metadata it rode in on."""
    metadata = params.get("Metadata")
    if not isinstance(metadata, Mapping) or LENGTH_HINT not in metadata:
        return None
    metadata = dict(metadata)
    value = metadata.pop(LENGTH_HINT)
    params["Metadata"] = metadata
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _merge_metadata(params: dict[str, Any], envelope: Mapping[str, str]) -> None:
    metadata = dict(params.get("Metadata") or {})
    if has_envelope_metadata(metadata):
        raise EncryptionError(
            "the write already carries S3 Encryption Client metadata; refusing to mix envelopes"
        )
    metadata.update(envelope)
    params["Metadata"] = metadata


def _instruction_key(key: str) -> str:
    return key + INSTRUCTION_SUFFIX


def _put_instruction(client: Any, bucket: str, key: str, content: Mapping[str, str]) -> None:
    body = json.dumps(dict(content), sort_keys=True).encode()
    with _internal():
        client.put_object(
            Bucket=bucket,
            Key=_instruction_key(key),
            Body=body,
            Metadata={INSTRUCTION_MARKER: ""},
        )


def _get_instruction(client: Any, bucket: str, key: str) -> dict[str, str] | None:
    with _internal():
        try:
            response = client.get_object(Bucket=bucket, Key=_instruction_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        raw = response["Body"].read()
    with translate_decryption_errors():
        value = json.loads(raw)
        if not isinstance(value, dict):
            decryption_failure()
        return {str(k): v for k, v in value.items()}


def _abort(client: Any, ident: UploadId) -> None:
    bucket, key, upload_id = ident
    try:
        with _internal():
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except Exception:
        log.warning("could not abort multipart upload %s of s3://%s/%s", upload_id, bucket, key)


# -- PutObject ------------------------------------------------------------------------------


def _refuse_unencryptable(params: Mapping[str, Any], context: Mapping[str, Any]) -> None:
    if context.get("is_presign_request"):
        raise EncryptionError(
            "a presigned upload cannot be client-side encrypted: the uploader sends the body"
        )
    if params.get("WriteOffsetBytes") is not None:
        raise EncryptionError("appending to an object cannot extend a client-side GCM stream")


def encrypt_put_object(
    state: EnvelopeState, params: dict[str, Any], context: dict[str, Any], **kwargs: Any
) -> None:
    """Replace PutObject's body with its ciphertext and add the S3EC metadata.

    Runs before botocore computes checksums and Content-Length, so both describe the
    ciphertext; the caller's values describing the plaintext are dropped.
    """
    pop_length_hint(params)
    settings = _settings(context)
    if settings is None:
        return
    _refuse_unencryptable(params, context)
    remember_target(params, context)
    source = PlaintextSource(params.get("Body"))
    if source.size > GCM_MAX_PLAINTEXT:
        source.close()
        raise EncryptionError("the object exceeds AES-GCM's 64 GiB limit for one object")
    sealed = seal(settings)
    on_object, instruction = encode_header(sealed.header, instruction_file=settings.instruction_file)
    _merge_metadata(params, on_object)
    _drop_plaintext_checksums(params)
    params["Body"] = EncryptingStream(source, sealed.content.gcm_encryptor, tag_from_cipher=True)
    if instruction is not None:
        context["sse_guard_instruction"] = instruction


def write_instruction_after_put(
    state: EnvelopeState,
    http_response: Any,
    context: dict[str, Any],
    model: Any = None,
    **kwargs: Any,
) -> None:
    """Write the instruction file once the object itself is stored (Java's order)."""
    instruction = context.pop("sse_guard_instruction", None)
    if instruction is None or _INTERNAL.get() or not 200 <= _status(http_response) < 300:
        return
    bucket, key = context["sse_guard_target"]
    try:
        _put_instruction(_client(state, context), bucket, key, instruction)
    except Exception as exc:
        raise EncryptionError(
            f"s3://{bucket}/{key} was stored but its instruction file was not; it cannot be "
            "decrypted until it is written again"
        ) from exc


def remember_target(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
    """Keep (Bucket, Key) in the context: after-call does not see the parameters."""
    if isinstance(params.get("Bucket"), str) and isinstance(params.get("Key"), str):
        context["sse_guard_target"] = (params["Bucket"], params["Key"])


# -- multipart -------------------------------------------------------------------------------


def encrypt_create_multipart(
    state: EnvelopeState, params: dict[str, Any], context: dict[str, Any], **kwargs: Any
) -> None:
    """Seal a new data key for the upload and put the S3EC metadata on Create.

    When the metadata already holds an envelope, this is s3transfer's multipart copy of
    a client-side object (it copies the source's metadata): its parts are ciphertext
    already, so no new envelope is made.
    """
    announced = pop_length_hint(params)
    settings = _settings(context)
    if settings is None:
        return
    _refuse_unencryptable(params, context)
    remember_target(params, context)
    if has_envelope_metadata(params.get("Metadata") or {}):
        context["sse_guard_upload"] = _Upload(None, None, params.get("ChecksumAlgorithm"))
        return
    sealed: Sealed = seal(settings)
    on_object, instruction = encode_header(sealed.header, instruction_file=settings.instruction_file)
    _merge_metadata(params, on_object)
    context["sse_guard_upload"] = _Upload(
        MultipartEncryption(
            sealed.content, order_timeout=state.order_timeout, plaintext_length=announced
        ),
        instruction,
        params.get("ChecksumAlgorithm"),
    )


def register_multipart(
    state: EnvelopeState, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any
) -> None:
    """Create succeeded: the upload's GCM stream now has an UploadId to be found by."""
    upload = context.pop("sse_guard_upload", None)
    if upload is None or not 200 <= _status(http_response) < 300:
        return
    bucket, key = context["sse_guard_target"]
    with state._lock:
        state._uploads[(bucket, key, parsed["UploadId"])] = upload


def _ident(params: Mapping[str, Any]) -> UploadId:
    return (params["Bucket"], params["Key"], params["UploadId"])


def encrypt_upload_part(
    state: EnvelopeState, params: dict[str, Any], context: dict[str, Any], **kwargs: Any
) -> None:
    """Encrypt one part: in part order into the GCM state, then CTR bytes on the wire."""
    settings = _settings(context)
    if settings is None:
        return
    ident = _ident(params)
    upload = state._upload(ident)
    if upload is None or upload.stream is None:
        raise EncryptionError(
            "this multipart upload was not started with client-side encryption by this "
            "guard; its parts cannot be encrypted (abort it and start again)"
        )
    _drop_plaintext_checksums(params)
    algorithm, digest = _part_digest(params, _client(state, context))
    try:
        body = upload.stream.encrypt_part(int(params["PartNumber"]), params.get("Body"), digest)
    except EncryptionError:
        _abort(_client(state, context), ident)
        state._forget(ident)
        raise
    params["Body"] = body
    if digest is not None:
        # Computed over the ciphertext while it was absorbed: botocore would otherwise
        # encrypt the part once more just to checksum it.
        params["ChecksumAlgorithm"] = algorithm
        params[f"Checksum{algorithm}"] = base64.b64encode(digest.digest()).decode()


class _Crc32:
    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | memoryview, /) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


_PART_DIGESTS: dict[str, Any] = {"CRC32": _Crc32, "SHA1": hashlib.sha1, "SHA256": hashlib.sha256}


def _part_digest(params: Mapping[str, Any], client: Any) -> tuple[str, Any]:
    """The checksum botocore would put on this part, if it is one computed here."""
    algorithm = params.get("ChecksumAlgorithm")
    if algorithm is None:
        config = getattr(getattr(client, "meta", None), "config", None)
        if getattr(config, "request_checksum_calculation", "when_supported") != "when_supported":
            return "", None
        algorithm = "CRC32"  # botocore's default for operations that support checksums
    algorithm = str(algorithm).upper()
    factory = _PART_DIGESTS.get(algorithm)
    return algorithm, None if factory is None else factory()


def fix_upload_part_copy(
    state: EnvelopeState, params: dict[str, Any], context: dict[str, Any], **kwargs: Any
) -> None:
    """A multipart copy of a client-side object copies ciphertext; keep the tag in it.

    HeadObject reports the plaintext length, so s3transfer's last range stops 16 bytes
    short of the stored object: extend the range that ends there to the real end.
    """
    settings = _settings(context)
    if settings is None:
        return
    upload = state._upload(_ident(params))
    if upload is None or upload.stream is not None:
        raise EncryptionError(
            "UploadPartCopy cannot add bytes to a client-side encrypted upload"
        )
    match = _RANGE.match(str(params.get("CopySourceRange", "")))
    if not match or not match.group(2):
        return
    with upload.lock:
        if upload.source_length is None:
            source = params["CopySource"]
            if isinstance(source, str):
                bucket, _, rest = source.lstrip("/").partition("/")
                source = {"Bucket": bucket, "Key": rest.split("?versionId=")[0]}
            with _internal():
                head = _client(state, context).head_object(Bucket=source["Bucket"], Key=source["Key"])
            upload.source_length = int(head["ContentLength"])
    if int(match.group(2)) == upload.source_length - TAG_BYTES - 1:
        params["CopySourceRange"] = f"bytes={match.group(1)}-{upload.source_length - 1}"


def complete_multipart(
    state: EnvelopeState, params: dict[str, Any], context: dict[str, Any], **kwargs: Any
) -> None:
    """Check the part list, and upload the tag as a last part if no part carried it."""
    settings = _settings(context)
    if settings is None:
        return
    remember_target(params, context)
    ident = _ident(params)
    upload = state._upload(ident)
    if upload is None:
        raise EncryptionError(
            "this multipart upload has no client-side encryption state in this guard; "
            "completing it would store an object that cannot be decrypted"
        )
    context["sse_guard_complete"] = ident
    if upload.stream is None:
        return
    parts = list((params.get("MultipartUpload") or {}).get("Parts") or [])
    client = _client(state, context)
    try:
        extra = upload.stream.finish([int(p["PartNumber"]) for p in parts])
        if extra is not None:
            number, tag = extra
            call: dict[str, Any] = {
                "Bucket": ident[0],
                "Key": ident[1],
                "UploadId": ident[2],
                "PartNumber": number,
                "Body": tag,
            }
            if upload.checksum_algorithm:
                call["ChecksumAlgorithm"] = upload.checksum_algorithm
            with _internal():
                response = client.upload_part(**call)
            entry = {"PartNumber": number, "ETag": response["ETag"]}
            entry.update({k: v for k, v in response.items() if k.startswith("Checksum") and k != "ChecksumType"})
            parts.append(entry)
    except Exception:
        _abort(client, ident)
        state._forget(ident)
        raise
    params["MultipartUpload"] = {**(params.get("MultipartUpload") or {}), "Parts": parts}
    # A full-object checksum the caller computed describes the plaintext.
    _drop_plaintext_checksums(params)


def after_complete_multipart(
    state: EnvelopeState, http_response: Any, context: dict[str, Any], **kwargs: Any
) -> None:
    ident = context.pop("sse_guard_complete", None)
    if ident is None or not 200 <= _status(http_response) < 300:
        return
    upload = state._upload(ident)
    state._forget(ident)
    if upload is not None and upload.instruction is not None:
        try:
            _put_instruction(_client(state, context), ident[0], ident[1], upload.instruction)
        except Exception as exc:
            raise EncryptionError(
                f"s3://{ident[0]}/{ident[1]} was stored but its instruction file was not"
            ) from exc


def forget_aborted(
    state: EnvelopeState, params: dict[str, Any], context: dict[str, Any], **kwargs: Any
) -> None:
    if isinstance(context.get(SETTINGS_KEY), ClientSide):
        state._forget(_ident(params))


# -- GetObject / HeadObject ------------------------------------------------------------------


def _parse_range(value: str) -> tuple[int | None, int | None]:
    match = _RANGE.match(value.strip())
    if not match or (not match.group(1) and not match.group(2)):
        raise ConfigurationError(f"unsupported Range {value!r} for a client-side encrypted object")
    first = int(match.group(1)) if match.group(1) else None
    last = int(match.group(2)) if match.group(2) else None
    if first is not None and last is not None and last < first:
        raise ConfigurationError(f"unsupported Range {value!r}")
    return first, last


def prepare_get_object(
    state: EnvelopeState, params: dict[str, Any], context: dict[str, Any], **kwargs: Any
) -> None:
    """Decide how a GetObject's range is served before it is sent.

    Without ``unsafe_allow_ranged_get`` a range is served from one authenticated
    decryption of the whole object (shared by the concurrent ranged GETs of a managed
    download). With it, the range is widened to whole AES blocks and decrypted with
    AES-CTR as the Java client does, unauthenticated.
    """
    settings = _settings(context)
    if settings is None:
        return
    remember_target(params, context)
    if params.get("PartNumber") is not None:
        raise ConfigurationError(
            "GetObject with PartNumber cannot be decrypted client-side; use a Range"
        )
    if not params.get("Range"):
        return
    first, last = _parse_range(params["Range"])
    if settings.unsafe_allow_ranged_get:
        if first is None:
            raise ConfigurationError("a suffix Range cannot be widened without the object size")
        wire_first = first - first % BLOCK
        wire_last = "" if last is None else str(last - last % BLOCK + BLOCK - 1)
        params["Range"] = f"bytes={wire_first}-{wire_last}"
        context["sse_guard_ctr_range"] = (first, last, wire_first)
        return
    del params["Range"]
    version = params.get("VersionId")
    if_match = params.get("IfMatch")
    share = version is not None or if_match is not None
    key = (params["Bucket"], params["Key"], str(version), str(if_match))
    context["sse_guard_verified_range"] = (first, last, key if share else None)


def skip_ciphertext_checksum(
    state: EnvelopeState, params: dict[str, Any], context: dict[str, Any], **kwargs: Any
) -> None:
    """No response checksum where the GCM tag already covers every byte.

    Every object such a rule reads is GCM, and its tag is checked before any byte is
    released: botocore's CRC of the ciphertext would cost one more pass over the body
    and add nothing (a corrupted body is a DecryptionError either way). Rules that may
    read plaintext or unauthenticated legacy CBC keep the checksum.
    """
    settings = _settings(context)
    if settings is None or settings.unsafe_allow_plaintext or settings.unsafe_allow_legacy:
        return
    checksum = context.get("checksum")
    if isinstance(checksum, dict):
        checksum.pop("response_algorithms", None)
    headers = params.get("headers")
    if isinstance(headers, dict):
        headers.pop("x-amz-checksum-mode", None)


def serve_verified_range(
    state: EnvelopeState, context: dict[str, Any], **kwargs: Any
) -> tuple[AWSResponse, dict[str, Any]] | None:
    """A ranged GET another thread has already decrypted needs no request at all."""
    wanted = context.get("sse_guard_verified_range")
    if wanted is None or _settings(context) is None:
        return None
    first, last, key = wanted
    if key is None:
        return None
    deadline = state._clock() + state.order_timeout
    while True:
        with state._lock:
            _evict_expired(state)
            copy = state._verified.get(key)
            if copy is not None:
                context["sse_guard_served_from_cache"] = True
                return _range_response(state, key, copy, first, last)
            event = state._fetching.get(key)
            if event is None:
                state._fetching[key] = threading.Event()
                context["sse_guard_fetching"] = key
                return None
        remaining = deadline - state._clock()
        if remaining <= 0 or not event.wait(remaining):
            return None  # the other fetch is stuck: make our own request


def _release_fetch(state: EnvelopeState, context: dict[str, Any]) -> None:
    key = context.pop("sse_guard_fetching", None)
    if key is None:
        return
    with state._lock:
        event = state._fetching.pop(key, None)
    if event is not None:
        event.set()


def release_failed_fetch(state: EnvelopeState, context: dict[str, Any], **kwargs: Any) -> None:
    """The fetching GET failed before after-call: let the waiting range GETs go on."""
    _release_fetch(state, context)


def _evict_expired(state: EnvelopeState) -> None:
    now = state._clock()
    for key, copy in list(state._verified.items()):
        if copy.expires <= now:
            _evict(state, key, copy)


def _evict(state: EnvelopeState, key: tuple[str, ...], copy: _VerifiedCopy) -> None:
    state._verified.pop(key, None)
    copy.evicted = True
    if copy.readers == 0:
        copy.spool.close()


class _RangeReader:
    """Reads one byte range of a verified copy, however many threads share the file."""

    def __init__(self, state: EnvelopeState, key: tuple[str, ...] | None, copy: _VerifiedCopy, start: int, length: int) -> None:
        self._state, self._key, self._copy = state, key, copy
        self._pos, self._end = start, start + length
        self._closed = False

    def read(self, amt: int | None = None) -> bytes:
        if self._closed:
            return b""
        n = self._end - self._pos if amt is None or amt < 0 else min(amt, self._end - self._pos)
        data = spool_pread(self._copy.spool, n, self._pos) if n > 0 else b""
        self._pos += len(data)
        with self._state._lock:
            self._copy.served += len(data)
            done = self._copy.served >= self._copy.size
            if done and self._key is not None and not self._copy.evicted:
                _evict(self._state, self._key, self._copy)
        if self._pos >= self._end:
            self.close()
        return data

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._state._lock:
            self._copy.readers -= 1
            if self._copy.evicted and self._copy.readers == 0:
                self._copy.spool.close()


def _range_response(
    state: EnvelopeState,
    key: tuple[str, ...] | None,
    copy: _VerifiedCopy,
    first: int | None,
    last: int | None,
) -> tuple[AWSResponse, dict[str, Any]]:
    # Called with state._lock held.
    size = copy.size
    if first is None:  # suffix range: the last `last` bytes
        assert last is not None
        start, end = max(0, size - last), size - 1
    else:
        start, end = first, size - 1 if last is None else min(last, size - 1)
    if start >= size or end < start:
        raise _invalid_range()
    length = end - start + 1
    copy.readers += 1
    body = _body(_RangeReader(state, key, copy, start, length), length)
    parsed = dict(copy.response)
    parsed.update(
        Body=body,
        ContentLength=length,
        ContentRange=f"bytes {start}-{end}/{size}",
        ResponseMetadata={**copy.response.get("ResponseMetadata", {}), "HTTPStatusCode": 206},
    )
    return AWSResponse("", 206, HTTPHeaders(), None), parsed


def _invalid_range() -> ClientError:
    # What S3 answers (416) for a range past the end; s3transfer treats it as empty.
    error: Any = {"Error": {"Code": "InvalidRange", "Message": "The requested range is not satisfiable"}}
    return ClientError(error, "GetObject")


def _body(reader: Any, length: int) -> StreamingBody:
    return StreamingBody(cast("IO[bytes]", reader), length)


# Failures of the connection, not of the object: botocore's and urllib3's read errors.
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    IncompleteReadError,
    ResponseStreamingError,
    HTTPClientError,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)


def _read_function(body: Any) -> Any:
    return body.read


def _transport_aware_read(body: Any) -> Any:
    def read(size: int = -1) -> bytes:
        try:
            return bytes(body.read(size))
        except _TRANSPORT_ERRORS as e:
            raise TransportFault(e) from e

    return read


# A body this large takes longer to arrive than a thread takes to start, so the key
# unwrap (a KMS round trip) runs beside the download instead of before it.
OVERLAP_UNWRAP_FROM = 1024 * 1024
# What may be read ahead, still encrypted, while the unwrap is in flight.
READ_AHEAD_LIMIT = 4 * 1024 * 1024


class _Unwrap(threading.Thread):
    def __init__(self, unwrap: Any) -> None:
        super().__init__(name="sse-guard-unwrap", daemon=True)
        # The caller's context variables, as if the unwrap ran on its thread.
        self._context = contextvars.copy_context()
        self._unwrap = unwrap
        self.content: ContentKey | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.content = self._context.run(self._unwrap)
        except BaseException as exc:  # re-raised on the caller's thread
            self.error = exc

    def result(self) -> ContentKey:
        self.join()
        if self.error is not None:
            raise self.error
        assert self.content is not None
        return self.content


def _read_while_unwrapping(read: Any, length: int, unwrap: Any) -> tuple[Any, ContentKey]:
    """Unwrap the data key on a worker thread while the ciphertext keeps arriving.

    Returns the content key and a read function that replays what was read meanwhile
    (at most READ_AHEAD_LIMIT bytes, still encrypted) before reading on.
    """
    worker = _Unwrap(unwrap)
    worker.start()
    ahead: collections.deque[bytes] = collections.deque()
    fetched = 0
    try:
        while worker.is_alive() and fetched < min(length, READ_AHEAD_LIMIT):
            chunk = read(min(READ_SIZE, length - fetched))
            if not chunk:
                break
            ahead.append(chunk)
            fetched += len(chunk)
    finally:
        content = worker.result()  # an unwrap failure wins over a transport one
    return _replaying(ahead, read), content


def _replaying(ahead: collections.deque[bytes], read: Any) -> Any:
    def replay(size: int = -1) -> bytes:
        if not ahead:
            return bytes(read(size))
        if size < 0 or size >= len(ahead[0]):
            return ahead.popleft()  # whole chunks, as they were read: no copy
        head = ahead[0]
        ahead[0] = head[size:]
        return head[:size]

    return replay


def decrypt_get_object(
    state: EnvelopeState,
    http_response: Any,
    parsed: dict[str, Any],
    context: dict[str, Any],
    **kwargs: Any,
) -> None:
    """Replace the response body with authenticated plaintext (or refuse it).

    The whole body is decrypted and its tag checked here, into a spool that stays in
    memory up to 8 MiB and then moves to a temporary file; the caller gets a body
    only when the object is authentic.
    """
    settings = _settings(context)
    if settings is None or context.pop("sse_guard_served_from_cache", False):
        return
    try:
        if not 200 <= _status(http_response) < 300 or "Body" not in parsed:
            return
        _decrypt_response(state, settings, parsed, context)
    finally:
        _release_fetch(state, context)


def _decrypt_response(
    state: EnvelopeState, settings: ClientSide, parsed: dict[str, Any], context: dict[str, Any]
) -> None:
    raw = parsed["Body"]
    try:
        metadata = parsed.get("Metadata") or {}
        bucket, key = context["sse_guard_target"]
        instruction = None
        if needs_instruction_file(metadata):
            instruction = _get_instruction(_client(state, context), bucket, key)
            if instruction is None:
                if not has_envelope_metadata(metadata) and settings.unsafe_allow_plaintext:
                    raw = None  # plaintext let through by name: the caller reads it as is
                    return
                decryption_failure()  # plaintext substituted, or the key file is gone
        with translate_decryption_errors():
            header = decode_header(metadata, instruction)
        length = int(parsed.get("ContentLength", 0))
        for name in list(parsed):
            if name.startswith("Checksum"):
                del parsed[name]  # they describe the ciphertext
        ctr_range = context.get("sse_guard_ctr_range")
        streaming = settings.unsafe_unauthenticated_streaming
        if ctr_range is not None or streaming or length < OVERLAP_UNWRAP_FROM:
            content = open_header(settings, header)
        if ctr_range is not None:
            _decrypt_ctr_range(parsed, content, ctr_range, length)
            return
        if streaming and content.algorithm == "gcm":
            reader = UnauthenticatedReader(_read_function(raw), content, length)
            parsed["Body"] = _body(reader, reader.plaintext_length)
            parsed["ContentLength"] = reader.plaintext_length
            raw = None  # the reader owns it now
            return
        read = _transport_aware_read(raw)
        try:
            if length >= OVERLAP_UNWRAP_FROM:
                read, content = _read_while_unwrapping(read, length, lambda: open_header(settings, header))
            decrypt = decrypt_gcm_to_spool if content.algorithm == "gcm" else decrypt_cbc_to_spool
            spool, size = decrypt(read, content, length)
        except TransportFault as fault:
            raise fault.original from None  # retryable by the caller, as for plain GETs
    finally:
        if raw is not None and parsed.get("Body") is raw:
            parsed["Body"].close()
    wanted = context.get("sse_guard_verified_range")
    if wanted is None:
        body = spool if isinstance(spool, MemorySpool) else ConsumingReader(spool)
        parsed["Body"] = StreamingBody(cast("IO[bytes]", body), size)
        parsed["ContentLength"] = size
        return
    first, last, share_key = wanted
    response = {k: v for k, v in parsed.items() if k not in ("Body", "ContentLength", "ContentRange")}
    copy = _VerifiedCopy(spool, size, response, state._clock() + state.verified_ttl)
    with state._lock:
        if share_key is not None:
            state._verified[share_key] = copy
        _, ranged = _range_response(state, share_key, copy, first, last)
    parsed.clear()
    parsed.update(ranged)


def _decrypt_ctr_range(
    parsed: dict[str, Any], content: ContentKey, ctr_range: tuple[int, int | None, int], wire_length: int
) -> None:
    if content.algorithm != "gcm":
        decryption_failure()  # legacy CBC ranges are not supported
    first, last, wire_first = ctr_range
    match = re.match(r"bytes (\d+)-(\d+)/(\d+)", str(parsed.get("ContentRange", "")))
    if not match or int(match.group(1)) != wire_first:
        decryption_failure()
    total = int(match.group(3))
    plain_size = total - TAG_BYTES
    if plain_size < 0:
        decryption_failure()
    end = plain_size - 1 if last is None else min(last, plain_size - 1)
    if first > end:
        raise _invalid_range()
    keep = end - first + 1
    reader = CtrRangeReader(
        _read_function(parsed["Body"]),
        content,
        wire_start=wire_first,
        wire_length=wire_length,
        skip=first - wire_first,
        keep=keep,
    )
    parsed["Body"] = _body(reader, keep)
    parsed["ContentLength"] = keep
    parsed["ContentRange"] = f"bytes {first}-{end}/{plain_size}"


def report_plaintext_length(
    state: EnvelopeState, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any
) -> None:
    """HeadObject: report the plaintext length when the object's metadata says GCM."""
    if _settings(context) is None or not 200 <= _status(http_response) < 300:
        return
    length = parsed.get("ContentLength")
    if isinstance(length, int) and length >= TAG_BYTES and is_gcm_metadata(parsed.get("Metadata") or {}):
        parsed["ContentLength"] = length - TAG_BYTES


# -- CopyObject ------------------------------------------------------------------------------


def _copy_source(params: Mapping[str, Any]) -> dict[str, str]:
    source = params["CopySource"]
    if isinstance(source, Mapping):
        result = {"Bucket": source["Bucket"], "Key": source["Key"]}
        if source.get("VersionId"):
            result["VersionId"] = source["VersionId"]
        return result
    from urllib.parse import unquote

    path, _, query = str(source).lstrip("/").partition("?")
    bucket, _, key = path.partition("/")
    result = {"Bucket": bucket, "Key": unquote(key)}
    if query.startswith("versionId="):
        result["VersionId"] = query[len("versionId=") :]
    return result


def keep_envelope_on_copy(
    state: EnvelopeState, params: dict[str, Any], context: dict[str, Any], **kwargs: Any
) -> None:
    """A copy under a client-side rule must stay decryptable, and must not be plaintext.

    S3 copies bytes; the envelope is the metadata. With ``MetadataDirective=REPLACE`` the
    source's S3EC keys are carried over (unless the caller supplies an envelope itself,
    as key rotation does). A source without an envelope is refused: the copy would
    store plaintext where the rule requires client-side encryption.
    """
    settings = _settings(context)
    if settings is None:
        return
    remember_target(params, context)
    source = _copy_source(params)
    with _internal():
        head = _client(state, context).head_object(**source)
    source_metadata = head.get("Metadata") or {}
    if not has_envelope_metadata(source_metadata):
        if needs_instruction_file(source_metadata) and _get_instruction(
            _client(state, context), source["Bucket"], source["Key"]
        ):
            context["sse_guard_copy_instruction"] = source
            return
        if not settings.unsafe_allow_plaintext:
            raise EncryptionError(
                "CopyObject cannot client-side encrypt: the source object is not encrypted "
                "with the S3 Encryption Client format (download and upload it instead)"
            )
        return
    if needs_instruction_file(source_metadata):
        context["sse_guard_copy_instruction"] = source
    if params.get("MetadataDirective") == "REPLACE":
        metadata = dict(params.get("Metadata") or {})
        if not has_envelope_metadata(metadata):
            metadata.update({k: v for k, v in source_metadata.items() if has_envelope_metadata({k: v})})
            params["Metadata"] = metadata


def copy_instruction_file(
    state: EnvelopeState, http_response: Any, context: dict[str, Any], **kwargs: Any
) -> None:
    source = context.pop("sse_guard_copy_instruction", None)
    if source is None or _INTERNAL.get() or not 200 <= _status(http_response) < 300:
        return
    bucket, key = context["sse_guard_target"]
    client = _client(state, context)
    content = _get_instruction(client, source["Bucket"], source["Key"])
    if content is None:
        raise EncryptionError("the copy's instruction file vanished before it could be copied")
    _put_instruction(client, bucket, key, content)


HANDLERS: tuple[tuple[str, Any], ...] = (
    ("before-parameter-build.s3.PutObject", encrypt_put_object),
    ("after-call.s3.PutObject", write_instruction_after_put),
    ("before-parameter-build.s3.CreateMultipartUpload", encrypt_create_multipart),
    ("after-call.s3.CreateMultipartUpload", register_multipart),
    ("before-parameter-build.s3.UploadPart", encrypt_upload_part),
    ("before-parameter-build.s3.UploadPartCopy", fix_upload_part_copy),
    ("before-parameter-build.s3.CompleteMultipartUpload", complete_multipart),
    ("after-call.s3.CompleteMultipartUpload", after_complete_multipart),
    ("before-parameter-build.s3.AbortMultipartUpload", forget_aborted),
    ("before-parameter-build.s3.GetObject", prepare_get_object),
    ("before-call.s3.GetObject", skip_ciphertext_checksum),
    ("before-call.s3.GetObject", serve_verified_range),
    ("after-call.s3.GetObject", decrypt_get_object),
    ("after-call-error.s3.GetObject", release_failed_fetch),
    ("after-call.s3.HeadObject", report_plaintext_length),
    ("before-parameter-build.s3.CopyObject", keep_envelope_on_copy),
    ("after-call.s3.CopyObject", copy_instruction_file),
)

"""The Amazon S3 Encryption Client's object metadata: parse and produce it.

Pure: no I/O, no boto3, no cryptography. An object's S3EC metadata (user metadata, or
an instruction file's JSON) becomes an :class:`EnvelopeHeader`, and back. Anything
malformed, ambiguous or mixed is refused with the opaque ``DecryptionError``.

Layouts (metadata names without the ``x-amz-meta-`` prefix; binary values base64):

- V3 (suite ``115``, key-committing): ``x-amz-c``, ``x-amz-3`` (wrapped key), ``x-amz-w``
  (wrap code), ``x-amz-d`` (commitment), ``x-amz-i`` (message id), ``x-amz-t`` (KMS
  encryption context) or ``x-amz-m`` (material description). With an instruction file,
  ``x-amz-c``/``x-amz-d``/``x-amz-i`` stay on the object and the rest go in the file.
- V2: ``x-amz-key-v2``, ``x-amz-iv``, ``x-amz-cek-alg``, ``x-amz-wrap-alg``,
  ``x-amz-tag-len``, ``x-amz-matdesc``; all in the file when there is one.
- V1 (legacy): ``x-amz-key``, ``x-amz-iv``, ``x-amz-matdesc``, optional
  ``x-amz-wrap-alg``; AES-CBC body.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ._errors import decryption_failure

__all__ = [
    "AES_GCM_WRAP",
    "CBC_CEK",
    "INSTRUCTION_SUFFIX",
    "KMS_CONTEXT_WRAP",
    "KMS_LEGACY_WRAP",
    "RESERVED_CONTEXT_KEY",
    "RSA_OAEP_WRAP",
    "V2_CEK",
    "V3_SUITE",
    "EnvelopeHeader",
    "decode_header",
    "encode_header",
    "has_envelope_metadata",
    "is_gcm_metadata",
    "needs_instruction_file",
    "parse_description",
]

V3_SUITE = "115"
V2_CEK = "AES/GCM/NoPadding"
CBC_CEK = "AES/CBC/PKCS5Padding"

KMS_CONTEXT_WRAP = "kms+context"
KMS_LEGACY_WRAP = "kms"
AES_GCM_WRAP = "AES/GCM"
RSA_OAEP_WRAP = "RSA-OAEP-SHA1"

# V3 stores the wrapping algorithm as a two-digit code.
_V3_WRAP_CODES = {"12": KMS_CONTEXT_WRAP, "02": AES_GCM_WRAP, "22": RSA_OAEP_WRAP}
_V3_WRAP_NAMES = {name: code for code, name in _V3_WRAP_CODES.items()}

RESERVED_CONTEXT_KEY = "aws:x-amz-cek-alg"
INSTRUCTION_SUFFIX = ".instruction"

MESSAGE_ID_BYTES = 28
COMMITMENT_BYTES = 28
GCM_IV_BYTES = 12
CBC_IV_BYTES = 16

_V3_OBJECT_KEYS = frozenset({"x-amz-c", "x-amz-d", "x-amz-i"})
_V3_FILE_KEYS = frozenset({"x-amz-3", "x-amz-w", "x-amz-t", "x-amz-m"})
_V3_KEYS = _V3_OBJECT_KEYS | _V3_FILE_KEYS
_V2_KEYS = frozenset(
    {"x-amz-key-v2", "x-amz-iv", "x-amz-cek-alg", "x-amz-wrap-alg", "x-amz-tag-len", "x-amz-matdesc"}
)
_V1_KEYS = frozenset({"x-amz-key", "x-amz-iv", "x-amz-matdesc", "x-amz-wrap-alg"})
_ALL_KEYS = _V3_KEYS | _V2_KEYS | _V1_KEYS | {"x-amz-unencrypted-content-length"}
_WRAPPED_KEY_NAMES = ("x-amz-3", "x-amz-key-v2", "x-amz-key")

Version = Literal["v3", "v2", "v1"]


@dataclass(frozen=True)
class EnvelopeHeader:
    """Everything an object's S3EC metadata says, decoded and checked for shape.

    ``wrap_algorithm`` uses the V2 names (``kms+context``, ``AES/GCM``,
    ``RSA-OAEP-SHA1``, legacy ``kms``, or a V1 name / ``None``) for every version.
    ``description`` is the KMS encryption context or the raw keyring's material
    description, as stored (reserved keys included).
    """

    version: Version
    cek_algorithm: str
    wrap_algorithm: str | None
    encrypted_key: bytes = field(repr=False)
    description: Mapping[str, str]
    iv: bytes | None = None
    message_id: bytes | None = None
    commitment: bytes | None = None

    @property
    def is_gcm(self) -> bool:
        return self.cek_algorithm in (V3_SUITE, V2_CEK)

    @property
    def is_legacy(self) -> bool:
        """True for the formats only ``unsafe_allow_legacy`` may read."""
        return (
            self.version == "v1"
            or self.cek_algorithm == CBC_CEK
            or self.wrap_algorithm == KMS_LEGACY_WRAP
        )


def _lower(metadata: Mapping[str, str]) -> dict[str, str]:
    # botocore lower-cases user metadata names on read; instruction files written by
    # other clients use the same lower-case names, but be forgiving on case only.
    return {str(k).lower(): v for k, v in metadata.items()}


def has_envelope_metadata(metadata: Mapping[str, str]) -> bool:
    """Does the object carry any S3EC metadata at all?"""
    return any(k in _ALL_KEYS for k in _lower(metadata))


def needs_instruction_file(metadata: Mapping[str, str]) -> bool:
    """The object's metadata has no wrapped key, so its key lives in an instruction file."""
    lowered = _lower(metadata)
    return not any(name in lowered for name in _WRAPPED_KEY_NAMES)


def is_gcm_metadata(metadata: Mapping[str, str]) -> bool:
    """Whether the object's own metadata says its body is GCM (ciphertext plus 16 bytes)."""
    lowered = _lower(metadata)
    return lowered.get("x-amz-c") == V3_SUITE or lowered.get("x-amz-cek-alg") == V2_CEK


def _b64(value: str | None, *, length: int | None = None) -> bytes:
    if value is None:
        decryption_failure()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        decryption_failure(exc)
    if length is not None and len(raw) != length:
        decryption_failure()
    return raw


def _enc(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def parse_description(text: str | None) -> dict[str, str]:
    """Parse a stored context or material description: a JSON object of strings."""
    if text is None:
        decryption_failure()
    try:
        value = json.loads(text)
    except (ValueError, TypeError) as exc:
        decryption_failure(exc)
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        decryption_failure()
    return dict(value)


def _dump_description(description: Mapping[str, str]) -> str:
    return json.dumps(dict(description), sort_keys=True, separators=(",", ":"))


def decode_header(
    object_metadata: Mapping[str, str], instruction: Mapping[str, str] | None = None
) -> EnvelopeHeader:
    """Decode an object's S3EC metadata, with its instruction file's content if any.

    Refuses (``DecryptionError``) metadata that mixes formats, an instruction file that
    repeats or contradicts what the object itself carries, and any malformed value.
    """
    obj = {k: v for k, v in _lower(object_metadata).items() if k in _ALL_KEYS}
    if instruction is not None:
        inst = _lower(instruction)
        if not all(isinstance(v, str) for v in inst.values()):
            decryption_failure()
        if "x-amz-c" in obj:
            # V3 split: commitment and message id on the object, the key in the file.
            if set(obj) - _V3_OBJECT_KEYS or set(inst) & _V3_OBJECT_KEYS:
                decryption_failure()
            if not set(inst) <= _V3_FILE_KEYS:
                decryption_failure()
        elif obj or set(inst) & _V3_OBJECT_KEYS:
            # V1/V2 put everything in the file: anything on the object is a mix.
            decryption_failure()
        merged = {**obj, **inst}
    else:
        merged = obj

    keys = set(merged)
    if keys & _V3_KEYS:
        if keys & (_V2_KEYS | _V1_KEYS):
            decryption_failure()
        return _decode_v3(merged)
    if "x-amz-key-v2" in keys:
        if "x-amz-key" in keys:
            decryption_failure()
        return _decode_v2(merged)
    if "x-amz-key" in keys:
        if keys & {"x-amz-cek-alg", "x-amz-tag-len"}:
            decryption_failure()
        return _decode_v1(merged)
    decryption_failure()


def _decode_v3(md: Mapping[str, str]) -> EnvelopeHeader:
    if md.get("x-amz-c") != V3_SUITE:
        decryption_failure()
    wrap = _V3_WRAP_CODES.get(md.get("x-amz-w", ""))
    if wrap is None:
        decryption_failure()
    if wrap == KMS_CONTEXT_WRAP:
        if "x-amz-m" in md:
            decryption_failure()
        description = parse_description(md.get("x-amz-t"))
    else:
        if "x-amz-t" in md:
            decryption_failure()
        description = parse_description(md["x-amz-m"]) if "x-amz-m" in md else {}
    return EnvelopeHeader(
        version="v3",
        cek_algorithm=V3_SUITE,
        wrap_algorithm=wrap,
        encrypted_key=_b64(md.get("x-amz-3")),
        description=description,
        message_id=_b64(md.get("x-amz-i"), length=MESSAGE_ID_BYTES),
        commitment=_b64(md.get("x-amz-d"), length=COMMITMENT_BYTES),
    )


def _decode_v2(md: Mapping[str, str]) -> EnvelopeHeader:
    cek = md.get("x-amz-cek-alg")
    wrap = md.get("x-amz-wrap-alg")
    if cek == V2_CEK:
        iv_len = GCM_IV_BYTES
        if md.get("x-amz-tag-len", "128") != "128":
            decryption_failure()
    elif cek == CBC_CEK:
        iv_len = CBC_IV_BYTES
        if "x-amz-tag-len" in md:
            decryption_failure()
    else:
        decryption_failure()
    if wrap not in (KMS_CONTEXT_WRAP, KMS_LEGACY_WRAP, AES_GCM_WRAP, RSA_OAEP_WRAP):
        decryption_failure()
    return EnvelopeHeader(
        version="v2",
        cek_algorithm=cek,
        wrap_algorithm=wrap,
        encrypted_key=_b64(md.get("x-amz-key-v2")),
        description=parse_description(md.get("x-amz-matdesc", "{}")),
        iv=_b64(md.get("x-amz-iv"), length=iv_len),
    )


def _decode_v1(md: Mapping[str, str]) -> EnvelopeHeader:
    return EnvelopeHeader(
        version="v1",
        cek_algorithm=CBC_CEK,
        wrap_algorithm=md.get("x-amz-wrap-alg"),
        encrypted_key=_b64(md.get("x-amz-key")),
        description=parse_description(md.get("x-amz-matdesc", "{}")),
        iv=_b64(md.get("x-amz-iv"), length=CBC_IV_BYTES),
    )


def encode_header(
    header: EnvelopeHeader, *, instruction_file: bool = False
) -> tuple[dict[str, str], dict[str, str] | None]:
    """Produce ``(object metadata, instruction file content or None)`` for a V3 or V2 header.

    Only the formats sse_guard writes are accepted: V3 and V2 GCM, never legacy ones.
    """
    if header.is_legacy or not header.is_gcm:
        raise ValueError("sse_guard writes only V3 and V2 GCM objects")
    if header.version == "v3":
        assert header.message_id is not None
        assert header.commitment is not None
        wrap_code = _V3_WRAP_NAMES[header.wrap_algorithm or ""]
        on_object = {
            "x-amz-c": V3_SUITE,
            "x-amz-d": _enc(header.commitment),
            "x-amz-i": _enc(header.message_id),
        }
        description_name = "x-amz-t" if header.wrap_algorithm == KMS_CONTEXT_WRAP else "x-amz-m"
        keyed = {
            "x-amz-3": _enc(header.encrypted_key),
            "x-amz-w": wrap_code,
            description_name: _dump_description(header.description),
        }
        if instruction_file:
            return on_object, keyed
        return {**on_object, **keyed}, None
    assert header.iv is not None
    everything = {
        "x-amz-key-v2": _enc(header.encrypted_key),
        "x-amz-iv": _enc(header.iv),
        "x-amz-cek-alg": V2_CEK,
        "x-amz-wrap-alg": header.wrap_algorithm or "",
        "x-amz-tag-len": "128",
        "x-amz-matdesc": _dump_description(header.description),
    }
    if instruction_file:
        return {}, everything
    return everything, None

"""Keyrings: who wraps and unwraps each object's data key.

A keyring is a small immutable value (hashable, so it can sit in frozen settings) that
implements :class:`Keyring`. Three come with sse_guard, in the Java client's layouts:

- :class:`KmsKeyring` (``kms+context``): GenerateDataKey/Decrypt under a KMS key with the
  caller's encryption context plus the reserved ``aws:x-amz-cek-alg`` entry.
- :class:`RawAesKeyring` (``AES/GCM``): ``iv12 || AES-256-GCM(wrapping key, aad=cek-alg)``.
- :class:`RawRsaKeyring` (``RSA-OAEP-SHA1``): OAEP over ``len || data key || cek-alg``.

Keys are never part of a keyring's ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, keywrap, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import ConfigurationError, EncryptionError
from ._errors import decryption_failure, translate_decryption_errors
from .format import (
    AES_GCM_WRAP,
    KMS_CONTEXT_WRAP,
    KMS_LEGACY_WRAP,
    RESERVED_CONTEXT_KEY,
    RSA_OAEP_WRAP,
    EnvelopeHeader,
)

__all__ = [
    "DataKey",
    "Keyring",
    "KmsKeyring",
    "RawAesKeyring",
    "RawRsaKeyring",
    "keyring_from_config",
    "validate_kms_context",
]

DATA_KEY_BYTES = 32
# Keys the AWS clients add to a stored KMS context themselves; a rule's configured
# context is compared with the stored one without them.
READ_RESERVED_KEYS = frozenset({RESERVED_CONTEXT_KEY, "kms_cmk_id"})


@dataclass(frozen=True)
class DataKey:
    """A fresh data key: the plaintext (never logged) and how it is stored."""

    plaintext: bytes = field(repr=False)
    encrypted: bytes = field(repr=False)
    wrap_algorithm: str
    description: Mapping[str, str]


@runtime_checkable
class Keyring(Protocol):
    """What a custom keyring implements.

    ``cek_algorithm`` is ``"115"`` for V3 objects and ``"AES/GCM/NoPadding"`` for V2;
    a keyring binds it to the wrapped key (KMS context, AAD, OAEP payload) so that the
    algorithm field cannot be swapped. ``context`` is the rule's encryption context.
    ``wrap_algorithm`` must be one of the V2 names the format knows
    (``kms+context``, ``AES/GCM``, ``RSA-OAEP-SHA1``).

    Failures: raise ``EncryptionError`` or ``ConfigurationError`` when wrapping, and
    anything at all when unwrapping (sse_guard turns it into ``DecryptionError``).
    Implementations should be frozen dataclasses so settings stay hashable, and
    thread-safe: managed transfers call them from s3transfer's threads, and a GET of
    1 MiB or more calls ``unwrap_data_key`` on a worker thread (with the caller's
    context variables) while the body downloads.
    """

    def generate_data_key(self, *, cek_algorithm: str, context: Mapping[str, str]) -> DataKey:
        """A new 32-byte data key for one object, wrapped."""
        ...

    def wrap_data_key(
        self, plaintext: bytes, *, cek_algorithm: str, context: Mapping[str, str]
    ) -> DataKey:
        """Wrap an existing data key (key rotation)."""
        ...

    def unwrap_data_key(self, header: EnvelopeHeader, *, context: Mapping[str, str]) -> bytes:
        """The plaintext data key of the object described by ``header``."""
        ...


def _check_data_key(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) != DATA_KEY_BYTES:
        decryption_failure()
    return key


def validate_kms_context(stored: Mapping[str, str], configured: Mapping[str, str]) -> None:
    """The rule's context must equal the stored one, reserved keys aside (Go's rule)."""
    visible = {k: v for k, v in stored.items() if k not in READ_RESERVED_KEYS}
    wanted = {k: v for k, v in configured.items() if k not in READ_RESERVED_KEYS}
    if visible != wanted:
        decryption_failure()


@dataclass(frozen=True)
class KmsKeyring:
    """A KMS key (id, ARN or alias) wrapping data keys with ``kms+context``.

    ``client`` is a boto3 KMS client (duck-typed). It may be left out when the keyring
    is configured, for the guard to bind with :meth:`with_client` at registration.
    """

    key_id: str
    client: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not self.key_id:
            raise ConfigurationError("keyring.key_id must be a non-empty string")

    @property
    def needs_client(self) -> bool:
        return self.client is None

    def with_client(self, client: Any) -> KmsKeyring:
        return dataclasses.replace(self, client=client)

    def _client(self) -> Any:
        if self.client is None:
            raise ConfigurationError(f"KMS keyring {self.key_id!r} has no KMS client bound")
        return self.client

    def _context(self, cek_algorithm: str, context: Mapping[str, str]) -> dict[str, str]:
        if RESERVED_CONTEXT_KEY in context:
            raise ConfigurationError(
                f"encryption context key {RESERVED_CONTEXT_KEY!r} is reserved for the client"
            )
        return {**context, RESERVED_CONTEXT_KEY: cek_algorithm}

    def generate_data_key(self, *, cek_algorithm: str, context: Mapping[str, str]) -> DataKey:
        full = self._context(cek_algorithm, context)
        client = self._client()
        try:
            response = client.generate_data_key(
                KeyId=self.key_id, KeySpec="AES_256", EncryptionContext=full
            )
        except Exception as exc:
            raise EncryptionError(f"KMS GenerateDataKey failed for {self.key_id!r}") from exc
        return DataKey(
            plaintext=bytes(response["Plaintext"]),
            encrypted=bytes(response["CiphertextBlob"]),
            wrap_algorithm=KMS_CONTEXT_WRAP,
            description=full,
        )

    def wrap_data_key(
        self, plaintext: bytes, *, cek_algorithm: str, context: Mapping[str, str]
    ) -> DataKey:
        full = self._context(cek_algorithm, context)
        try:
            response = self._client().encrypt(
                KeyId=self.key_id, Plaintext=plaintext, EncryptionContext=full
            )
        except ConfigurationError:
            raise
        except Exception as exc:
            raise EncryptionError(f"KMS Encrypt failed for {self.key_id!r}") from exc
        return DataKey(plaintext, bytes(response["CiphertextBlob"]), KMS_CONTEXT_WRAP, full)

    def unwrap_data_key(self, header: EnvelopeHeader, *, context: Mapping[str, str]) -> bytes:
        stored = dict(header.description)
        if header.wrap_algorithm == KMS_CONTEXT_WRAP:
            # The algorithm is bound through the context: a swapped field fails here.
            if stored.get(RESERVED_CONTEXT_KEY) != header.cek_algorithm:
                decryption_failure()
        elif header.wrap_algorithm != KMS_LEGACY_WRAP:
            decryption_failure()
        validate_kms_context(stored, context)
        client = self._client()
        with translate_decryption_errors():
            response = client.decrypt(
                CiphertextBlob=header.encrypted_key, EncryptionContext=stored, KeyId=self.key_id
            )
            return _check_data_key(bytes(response["Plaintext"]))


def _frozen_description(value: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigurationError("material_description must be a table of strings")
    return tuple(sorted(value.items()))


def _no_context(context: Mapping[str, str]) -> None:
    if context:
        raise ConfigurationError(
            "raw keyrings take a material_description, not an encryption context"
        )


@dataclass(frozen=True)
class RawAesKeyring:
    """A 256-bit wrapping key kept by the application (Java's ``AesKeyring``)."""

    wrapping_key: bytes = field(repr=False)
    material_description: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.wrapping_key, bytes) or len(self.wrapping_key) != 32:
            raise ConfigurationError("a raw AES wrapping key must be exactly 32 bytes")

    @classmethod
    def of(
        cls, wrapping_key: bytes, *, material_description: Mapping[str, str] | None = None
    ) -> RawAesKeyring:
        return cls(wrapping_key, _frozen_description(material_description))

    def generate_data_key(self, *, cek_algorithm: str, context: Mapping[str, str]) -> DataKey:
        return self.wrap_data_key(
            os.urandom(DATA_KEY_BYTES), cek_algorithm=cek_algorithm, context=context
        )

    def wrap_data_key(
        self, plaintext: bytes, *, cek_algorithm: str, context: Mapping[str, str]
    ) -> DataKey:
        _no_context(context)
        iv = os.urandom(12)
        wrapped = iv + AESGCM(self.wrapping_key).encrypt(iv, plaintext, cek_algorithm.encode())
        return DataKey(plaintext, wrapped, AES_GCM_WRAP, dict(self.material_description))

    def unwrap_data_key(self, header: EnvelopeHeader, *, context: Mapping[str, str]) -> bytes:
        blob = header.encrypted_key
        with translate_decryption_errors():
            if header.wrap_algorithm == AES_GCM_WRAP and header.version != "v1":
                if len(blob) != 12 + DATA_KEY_BYTES + 16:
                    decryption_failure()
                try:
                    key = AESGCM(self.wrapping_key).decrypt(
                        blob[:12], blob[12:], header.cek_algorithm.encode()
                    )
                except InvalidTag as exc:
                    decryption_failure(exc)
                return _check_data_key(key)
            if header.version == "v1" and header.wrap_algorithm == "AESWrap":
                return _check_data_key(keywrap.aes_key_unwrap(self.wrapping_key, blob))
            if header.version == "v1" and header.wrap_algorithm is None:
                # The oldest V1 objects: Java's default "AES" cipher, i.e. ECB/PKCS5.
                decryptor = Cipher(algorithms.AES(self.wrapping_key), modes.ECB()).decryptor()  # noqa: S305
                unpadder = padding.PKCS7(128).unpadder()
                padded = decryptor.update(blob) + decryptor.finalize()
                return _check_data_key(unpadder.update(padded) + unpadder.finalize())
            decryption_failure()


_OAEP_SHA1 = asym_padding.OAEP(
    mgf=asym_padding.MGF1(algorithm=hashes.SHA1()),  # noqa: S303 - the format's choice
    algorithm=hashes.SHA1(),  # noqa: S303
    label=None,
)
_OAEP_SHA256 = asym_padding.OAEP(
    mgf=asym_padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


@dataclass(frozen=True)
class RawRsaKeyring:
    """An RSA key pair kept by the application (Java's ``RsaKeyring``), PEM-encoded.

    Writing needs the public key (taken from the private key when only that is given);
    reading needs the private key.
    """

    public_key_pem: bytes | None = field(default=None, repr=False)
    private_key_pem: bytes | None = field(default=None, repr=False)
    material_description: tuple[tuple[str, str], ...] = ()
    _public: Any = field(default=None, init=False, repr=False, compare=False)
    _private: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        private: Any = None
        public: Any = None
        try:
            if self.private_key_pem is not None:
                private = serialization.load_pem_private_key(self.private_key_pem, password=None)
                if not isinstance(private, rsa.RSAPrivateKey):
                    raise ConfigurationError("private_key_file is not an RSA private key")
                public = private.public_key()
            if self.public_key_pem is not None:
                public = serialization.load_pem_public_key(self.public_key_pem)
                if not isinstance(public, rsa.RSAPublicKey):
                    raise ConfigurationError("public_key_file is not an RSA public key")
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"cannot load the RSA key: {exc}") from exc
        if public is None:
            raise ConfigurationError("a raw RSA keyring needs a private or public key")
        object.__setattr__(self, "_public", public)
        object.__setattr__(self, "_private", private)

    @classmethod
    def of(
        cls,
        *,
        public_key_pem: bytes | None = None,
        private_key_pem: bytes | None = None,
        material_description: Mapping[str, str] | None = None,
    ) -> RawRsaKeyring:
        return cls(public_key_pem, private_key_pem, _frozen_description(material_description))

    def generate_data_key(self, *, cek_algorithm: str, context: Mapping[str, str]) -> DataKey:
        return self.wrap_data_key(
            os.urandom(DATA_KEY_BYTES), cek_algorithm=cek_algorithm, context=context
        )

    def wrap_data_key(
        self, plaintext: bytes, *, cek_algorithm: str, context: Mapping[str, str]
    ) -> DataKey:
        _no_context(context)
        payload = bytes([len(plaintext)]) + plaintext + cek_algorithm.encode()
        wrapped = self._public.encrypt(payload, _OAEP_SHA1)
        return DataKey(plaintext, wrapped, RSA_OAEP_WRAP, dict(self.material_description))

    def unwrap_data_key(self, header: EnvelopeHeader, *, context: Mapping[str, str]) -> bytes:
        if self._private is None:
            raise ConfigurationError("this RSA keyring has no private key to decrypt with")
        with translate_decryption_errors():
            if header.wrap_algorithm == RSA_OAEP_WRAP and header.version != "v1":
                payload = self._private.decrypt(header.encrypted_key, _OAEP_SHA1)
                length = payload[0]
                key, alg = payload[1 : 1 + length], payload[1 + length :]
                if alg != header.cek_algorithm.encode():
                    decryption_failure()
                return _check_data_key(key)
            if header.version == "v1" and header.wrap_algorithm is None:
                return _check_data_key(
                    self._private.decrypt(header.encrypted_key, asym_padding.PKCS1v15())
                )
            if header.version == "v1" and header.wrap_algorithm == (
                "RSA/ECB/OAEPWithSHA-256AndMGF1Padding"
            ):
                return _check_data_key(self._private.decrypt(header.encrypted_key, _OAEP_SHA256))
            decryption_failure()


def _read_key_file(base_dir: Path, table: Mapping[str, Any], name: str) -> bytes:
    value = table.get(name)
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"keyring.{name} must be a file name")
    path = Path(value)
    if not path.is_absolute():
        path = base_dir / path
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"keyring.{name}: cannot read {path}: {exc.strerror}") from exc


def _aes_key(raw: bytes) -> bytes:
    if len(raw) == 32:
        return raw
    try:
        decoded = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != 32:
        raise ConfigurationError(
            "keyring.key_file must hold 32 raw bytes or their base64 encoding"
        )
    return decoded


def keyring_from_config(table: Mapping[str, Any], *, base_dir: Path) -> Keyring:
    """Build a keyring from a policy file's ``keyring = {...}`` table.

    ``type`` is ``kms`` (``key_id``), ``raw-aes`` (``key_file``: 32 raw bytes or base64
    text) or ``raw-rsa`` (``private_key_file`` and/or ``public_key_file``, PEM). Raw
    keyrings take an optional ``material_description`` table. Relative file names are
    resolved against ``base_dir`` (the policy file's directory).
    """
    if not isinstance(table, Mapping):
        raise ConfigurationError("keyring must be a table")
    kind = table.get("type")
    allowed = {
        "kms": {"type", "key_id"},
        "raw-aes": {"type", "key_file", "material_description"},
        "raw-rsa": {"type", "private_key_file", "public_key_file", "material_description"},
    }
    if kind not in allowed:
        raise ConfigurationError(
            f"keyring.type must be one of kms, raw-aes, raw-rsa (got {kind!r})"
        )
    unknown = set(table) - allowed[kind]
    if unknown:
        raise ConfigurationError(f"keyring: unknown field(s) {', '.join(sorted(unknown))}")
    if kind == "kms":
        key_id = table.get("key_id")
        if not isinstance(key_id, str) or not key_id:
            raise ConfigurationError("keyring.key_id must be a KMS key id, ARN or alias")
        return KmsKeyring(key_id)
    description = table.get("material_description")
    if description is not None and not isinstance(description, Mapping):
        raise ConfigurationError("keyring.material_description must be a table of strings")
    if kind == "raw-aes":
        return RawAesKeyring.of(
            _aes_key(_read_key_file(base_dir, table, "key_file")),
            material_description=description,
        )
    private = (
        _read_key_file(base_dir, table, "private_key_file")
        if "private_key_file" in table
        else None
    )
    public = (
        _read_key_file(base_dir, table, "public_key_file") if "public_key_file" in table else None
    )
    if private is None and public is None:
        raise ConfigurationError("keyring: raw-rsa needs private_key_file or public_key_file")
    return RawRsaKeyring.of(
        public_key_pem=public, private_key_pem=private, material_description=description
    )

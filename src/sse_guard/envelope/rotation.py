"""Key rotation: re-wrap a stored object's data key under a new keyring, body untouched.

The data key, and with it the ciphertext, IV, message id and commitment, stay the same;
only the wrapped key and its description change. With an instruction file only the
file is rewritten; otherwise the object's metadata is replaced by an in-place
CopyObject (S3 copies the bytes server-side; nothing is downloaded).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import EncryptionError
from ..settings import ClientSide
from .core import rewrap_header
from .format import decode_header, encode_header, has_envelope_metadata, needs_instruction_file
from .handlers import _get_instruction, _internal, _put_instruction
from .keyrings import Keyring

__all__ = ["rotate_object_key"]


def rotate_object_key(
    s3_client: Any,
    bucket: str,
    key: str,
    *,
    old: ClientSide,
    new_keyring: Keyring,
    new_context: Mapping[str, str] | None = None,
) -> None:
    """Re-wrap ``s3://bucket/key``'s data key from ``old``'s keyring to ``new_keyring``.

    Raises ``DecryptionError`` if the old rule cannot open the object's envelope and
    ``EncryptionError`` if the object has none. The object's ETag changes only in the
    metadata case (a copy makes a new object version).
    """
    with _internal():
        head = s3_client.head_object(Bucket=bucket, Key=key)
    metadata = head.get("Metadata") or {}
    instruction = None
    if needs_instruction_file(metadata):
        instruction = _get_instruction(s3_client, bucket, key)
        if instruction is None:
            raise EncryptionError(f"s3://{bucket}/{key} carries no client-side envelope")
    elif not has_envelope_metadata(metadata):
        raise EncryptionError(f"s3://{bucket}/{key} carries no client-side envelope")
    header = decode_header(metadata, instruction)
    rotated = rewrap_header(header, old=old, new_keyring=new_keyring, new_context=new_context)
    on_object, in_file = encode_header(rotated, instruction_file=instruction is not None)
    if in_file is not None:
        _put_instruction(s3_client, bucket, key, in_file)
        return
    kept = {k: v for k, v in metadata.items() if not has_envelope_metadata({k: v})}
    copy: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "CopySource": {"Bucket": bucket, "Key": key},
        "MetadataDirective": "REPLACE",
        "Metadata": {**kept, **on_object},
        "CopySourceIfMatch": head["ETag"],
    }
    for name in ("ContentType", "ContentEncoding", "ContentDisposition", "ContentLanguage",
                 "CacheControl", "StorageClass", "ServerSideEncryption", "SSEKMSKeyId"):
        if head.get(name):
            copy[name] = head[name]
    with _internal():
        s3_client.copy_object(**copy)

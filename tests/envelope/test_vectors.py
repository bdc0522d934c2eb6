"""Every case of the Go client's known-answer vectors decrypts or is refused as stated."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest

from sse_guard.envelope import KmsKeyring
from sse_guard.envelope.cipher import decrypt_cbc_to_spool, decrypt_gcm_to_spool
from sse_guard.envelope.core import open_header
from sse_guard.envelope.format import decode_header
from sse_guard.errors import DecryptionError
from sse_guard.settings import ClientSide

from .conftest import StubKms, load_vectors

VECTORS = load_vectors()
OBJECTS = {case["name"]: case for case in VECTORS["objects"]}


def decrypt_case(case: dict[str, Any], settings: ClientSide) -> bytes:
    header = decode_header(case["metadata"])
    content = open_header(settings, header)
    body = bytes.fromhex(case["ciphertext_hex"])
    reader = io.BytesIO(body)
    decrypt = decrypt_gcm_to_spool if content.algorithm == "gcm" else decrypt_cbc_to_spool
    spool, _ = decrypt(reader.read, content, len(body))
    return spool.read()


def settings_for(case: dict[str, Any], *, legacy: bool) -> ClientSide:
    key = base64.b64decode(case["data_key_b64"]) if case["data_key_b64"] else None
    return ClientSide(
        keyring=KmsKeyring("test-key-id", client=StubKms(key)),
        commitment_policy="require-encrypt-allow-decrypt",
        unsafe_allow_legacy=legacy,
    )


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_vector_object_decrypts_or_is_refused_as_stated(name: str) -> None:
    case = OBJECTS[name]
    legacy = bool(case["legacy_opt_in_required"])
    if case["expect"] == "plaintext":
        got = decrypt_case(case, settings_for(case, legacy=legacy))
        assert got.hex() == case["plaintext_hex"]
    else:
        with pytest.raises(DecryptionError):
            decrypt_case(case, settings_for(case, legacy=legacy))


@pytest.mark.parametrize(
    "name", sorted(n for n, c in OBJECTS.items() if c["legacy_opt_in_required"])
)
def test_legacy_vector_is_refused_without_the_opt_in(name: str) -> None:
    with pytest.raises(DecryptionError):
        decrypt_case(OBJECTS[name], settings_for(OBJECTS[name], legacy=False))


def test_v2_vector_is_refused_under_the_default_require_decrypt_policy() -> None:
    case = OBJECTS["GetMockV2Object"]
    settings = ClientSide(keyring=KmsKeyring("k", client=StubKms(base64.b64decode(case["data_key_b64"]))))
    with pytest.raises(DecryptionError):
        decrypt_case(case, settings)


def test_v3_vector_decrypts_under_the_default_policy() -> None:
    case = OBJECTS["GetMockV3Object"]
    settings = ClientSide(keyring=KmsKeyring("k", client=StubKms(base64.b64decode(case["data_key_b64"]))))
    assert decrypt_case(case, settings).hex() == case["plaintext_hex"]


@pytest.mark.parametrize("case", VECTORS["context_validation"], ids=lambda c: c["name"])
def test_context_validation_table(case: dict[str, Any]) -> None:
    base = OBJECTS["GetMockV2Object"]
    metadata = {**base["metadata"], "x-amz-matdesc": case["stored_matdesc"]}
    kms = StubKms(base64.b64decode(base["data_key_b64"]))
    settings = ClientSide(
        keyring=KmsKeyring("test-key-id", client=kms),
        format="v2",
        context=tuple(sorted(case["caller_context"].items())),
    )
    run = {**base, "metadata": metadata}
    if case["expect_error"]:
        with pytest.raises(DecryptionError):
            decrypt_case(run, settings)
    else:
        assert decrypt_case(run, settings).hex() == base["plaintext_hex"]
        # the stored map, parsed, is what went to KMS
        (_, call), = [c for c in kms.calls if c[0] == "Decrypt"]
        import json

        assert call["EncryptionContext"] == json.loads(case["stored_matdesc"])

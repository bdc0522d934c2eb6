"""Keyrings from the policy file, RSA and AES layouts, rotation, and a round-trip property."""

from __future__ import annotations

import base64
import io
import itertools
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_guard.envelope import KmsKeyring, RawAesKeyring, RawRsaKeyring, keyring_from_config
from sse_guard.envelope.cipher import (
    ContentKey,
    EncryptingStream,
    PlaintextSource,
    decrypt_gcm_to_spool,
)
from sse_guard.envelope.multipart import MultipartEncryption
from sse_guard.envelope.rotation import rotate_object_key
from sse_guard.errors import ConfigurationError, DecryptionError

from .conftest import Harness, StubKms, raw_object

PEM = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)


def test_keyring_from_config_reads_each_type(tmp_path: Path) -> None:
    (tmp_path / "k.bin").write_bytes(os.urandom(32))
    (tmp_path / "k.b64").write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    (tmp_path / "k.pem").write_bytes(PEM)
    assert keyring_from_config({"type": "kms", "key_id": "alias/x"}, base_dir=tmp_path) == KmsKeyring("alias/x")
    assert isinstance(keyring_from_config({"type": "raw-aes", "key_file": "k.bin"}, base_dir=tmp_path), RawAesKeyring)
    aes = keyring_from_config(
        {"type": "raw-aes", "key_file": "k.b64", "material_description": {"v": "1"}}, base_dir=tmp_path
    )
    assert isinstance(aes, RawAesKeyring)
    assert aes.material_description == (("v", "1"),)
    assert "b'" not in repr(aes)
    assert isinstance(keyring_from_config({"type": "raw-rsa", "private_key_file": "k.pem"}, base_dir=tmp_path), RawRsaKeyring)
    hash(aes)


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"type": "gpg"}, "keyring.type"),
        ({"type": "kms"}, "keyring.key_id"),
        ({"type": "raw-aes", "key_file": "missing.bin"}, "keyring.key_file"),
        ({"type": "raw-aes", "key_file": "short.bin"}, "keyring.key_file"),
        ({"type": "raw-rsa"}, "raw-rsa"),
        ({"type": "kms", "key_id": "a", "colour": "red"}, "colour"),
    ],
)
def test_keyring_from_config_names_the_bad_field(tmp_path: Path, table: dict[str, object], field: str) -> None:
    (tmp_path / "short.bin").write_bytes(b"abc")
    with pytest.raises(ConfigurationError, match=field):
        keyring_from_config(table, base_dir=tmp_path)


def test_a_reserved_context_key_is_a_configuration_error() -> None:
    keyring = KmsKeyring("k", client=StubKms())
    with pytest.raises(ConfigurationError):
        keyring.generate_data_key(cek_algorithm="115", context={"aws:x-amz-cek-alg": "115"})


def test_kms_keyring_sends_the_exact_context_with_the_reserved_key() -> None:
    kms = StubKms()
    KmsKeyring("k", client=kms).generate_data_key(cek_algorithm="115", context={"team": "a"})
    assert kms.calls[0][1]["EncryptionContext"] == {"team": "a", "aws:x-amz-cek-alg": "115"}


@pytest.mark.parametrize("fmt", ["v3", "v2"])
def test_rsa_keyring_round_trip_on_the_wire(harness: Harness, fmt: str) -> None:
    harness.rule(keyring=RawRsaKeyring.of(private_key_pem=PEM), format=fmt)
    harness.s3.put_object(Bucket=harness.bucket, Key="rsa", Body=b"rsa data")
    _, metadata = raw_object(harness, "rsa")
    assert metadata.get("x-amz-w", metadata.get("x-amz-wrap-alg")) in ("22", "RSA-OAEP-SHA1")
    assert harness.s3.get_object(Bucket=harness.bucket, Key="rsa")["Body"].read() == b"rsa data"


@pytest.mark.parametrize("instruction_file", [False, True])
def test_rotation_rewraps_the_key_and_leaves_the_body(harness: Harness, instruction_file: bool) -> None:
    old_key, new_key = os.urandom(32), os.urandom(32)
    old = harness.rule(keyring=RawAesKeyring(old_key), instruction_file=instruction_file)
    harness.s3.put_object(Bucket=harness.bucket, Key="o", Body=b"rotate me")
    body_before, _ = raw_object(harness, "o")
    rotate_object_key(harness.s3, harness.bucket, "o", old=old, new_keyring=RawAesKeyring(new_key))
    assert raw_object(harness, "o")[0] == body_before
    harness.rule(keyring=RawAesKeyring(new_key), instruction_file=instruction_file)
    assert harness.s3.get_object(Bucket=harness.bucket, Key="o")["Body"].read() == b"rotate me"
    harness.rule(keyring=RawAesKeyring(old_key))
    with pytest.raises(DecryptionError):
        harness.s3.get_object(Bucket=harness.bucket, Key="o")


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=64),
    cut=st.lists(st.integers(0, 70), max_size=4),
    v3=st.booleans(),
    min_part=st.sampled_from([0, 17]),
)
def test_stream_and_multipart_round_trip(data: bytes, cut: list[int], v3: bool, min_part: int) -> None:
    content = ContentKey(os.urandom(32), b"\x01" * 12 if v3 else os.urandom(12), b"\x00\x73" if v3 else b"")
    whole = EncryptingStream(PlaintextSource(data), content.gcm_encryptor, tag_from_cipher=True).read()
    spool, n = decrypt_gcm_to_spool(io.BytesIO(whole).read, content, len(whole))
    assert spool.read() == data
    assert n == len(data)
    # The same plaintext cut into parts at random places gives the same object.
    points = sorted({min(c, len(data)) for c in cut} | {0, len(data)})
    if min_part:  # S3's rule, scaled down: every part but the last is at least min_part
        points = sorted({0, len(data)} | {c - c % min_part for c in cut if c - c % min_part < len(data)})
    mp = MultipartEncryption(content, min_part=min_part)
    pieces = [mp.encrypt_part(i + 1, data[a:b]).read() for i, (a, b) in enumerate(itertools.pairwise(points))]
    extra = mp.finish(list(range(1, len(pieces) + 1)))
    if extra is not None:
        pieces.append(extra[1])
    assert b"".join(pieces) == whole

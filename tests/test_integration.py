"""The parts together: a policy file with client-side and server-side rules, registered on
a session, through every transfer path, on both moto modes and the strict tier."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

import sse_guard
from backends import Backend, Wire, sse_headers
from sse_guard import DecryptionError, Policy

MiB = 1024 * 1024
PARTS = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)


def policy_file(tmp_path: Path, bucket: str, keyring: str) -> Path:
    path = tmp_path / "sse-guard.toml"
    path.write_text(
        f"""
mode = "enforce"

[[rules]]
bucket = "{bucket}"
prefix = "vault/"
algorithm = "client-side"
encryption_context = {{ team = "payments" }}
keyring = {keyring}

[[rules]]
bucket = "{bucket}"
algorithm = "aws:kms"
kms_key_id = "alias/app"
bucket_key = true
"""
    )
    return path


@pytest.fixture
def setup(backend: Backend, tmp_path: Path, wire: Wire) -> tuple[Any, str, str]:
    kms = backend.client("kms")
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/app", TargetKeyId=arn)
    bucket = backend.bucket("int")
    backend.client("s3").create_bucket(Bucket=bucket)
    policy = Policy.from_file(policy_file(tmp_path, bucket, '{ type = "kms", key_id = "alias/app" }'))
    session = backend.session()
    sse_guard.register(session, policy=policy)
    return wire.attach(session.client("s3")), bucket, arn


@pytest.mark.strict_s3
def test_a_kms_keyring_from_the_policy_file_round_trips_through_every_path(setup: tuple[Any, str, str], backend: Backend, tmp_path: Path, wire: Wire) -> None:
    s3, bucket, arn = setup
    small = os.urandom(1000)
    big = os.urandom(12 * MiB + 7)
    s3.put_object(Bucket=bucket, Key="vault/small", Body=small)
    s3.upload_fileobj(io.BytesIO(big), bucket, "vault/big", Config=PARTS)
    assert s3.get_object(Bucket=bucket, Key="vault/small")["Body"].read() == small
    out = tmp_path / "big.out"
    s3.download_file(bucket, "vault/big", str(out), Config=PARTS)
    assert out.read_bytes() == big
    # what S3 holds is ciphertext in the S3EC format, not the plaintext
    plain = backend.client("s3")
    stored = plain.get_object(Bucket=bucket, Key="vault/big")
    assert stored["Metadata"]["x-amz-c"] == "115"
    assert stored["ContentLength"] == len(big) + 16
    assert stored["Body"].read(64) != big[:64]
    # and the server-side rule still applies outside the client-side prefix
    s3.put_object(Bucket=bucket, Key="other", Body=b"x")
    assert sse_headers(wire.of("PutObject")[-1])["x-amz-server-side-encryption-aws-kms-key-id"] == arn


def test_a_tampered_object_under_the_policy_is_refused(setup: tuple[Any, str, str], backend: Backend) -> None:
    s3, bucket, _ = setup
    s3.put_object(Bucket=bucket, Key="vault/t", Body=b"attack at dawn" * 100)
    plain = backend.client("s3")
    stored = plain.get_object(Bucket=bucket, Key="vault/t")
    body = bytearray(stored["Body"].read())
    body[10] ^= 1
    plain.put_object(Bucket=bucket, Key="vault/t", Body=bytes(body), Metadata=stored["Metadata"])
    with pytest.raises(DecryptionError):
        s3.get_object(Bucket=bucket, Key="vault/t")["Body"].read()


def test_plaintext_substituted_under_a_client_side_rule_is_refused(setup: tuple[Any, str, str], backend: Backend) -> None:
    s3, bucket, _ = setup
    backend.client("s3").put_object(Bucket=bucket, Key="vault/planted", Body=b"attacker's data")
    with pytest.raises(DecryptionError):
        s3.get_object(Bucket=bucket, Key="vault/planted")["Body"].read()


def test_a_raw_aes_keyring_file_works_and_a_wrong_key_is_refused(backend: Backend, tmp_path: Path, wire: Wire) -> None:
    bucket = backend.bucket("raw")
    backend.client("s3").create_bucket(Bucket=bucket)
    kms = backend.client("kms")
    kms.create_alias(AliasName="alias/app", TargetKeyId=kms.create_key()["KeyMetadata"]["Arn"])
    (tmp_path / "wrap.key").write_bytes(os.urandom(32))
    text = policy_file(tmp_path, bucket, '{ type = "raw-aes", key_file = "wrap.key" }').read_text()
    path = tmp_path / "raw.toml"
    path.write_text(text.replace('encryption_context = { team = "payments" }\n', ""))
    session = backend.session()
    sse_guard.register(session, policy=Policy.from_file(path))
    s3 = session.client("s3")
    s3.put_object(Bucket=bucket, Key="vault/a", Body=b"secret")
    assert s3.get_object(Bucket=bucket, Key="vault/a")["Body"].read() == b"secret"
    (tmp_path / "wrap.key").write_bytes(os.urandom(32))
    other = backend.session()
    sse_guard.register(other, policy=Policy.from_file(path))
    with pytest.raises(DecryptionError):
        other.client("s3").get_object(Bucket=bucket, Key="vault/a")["Body"].read()


class _Huge:
    """A seekable source claiming 65 GiB; reading it would be a bug."""

    def __init__(self) -> None:
        self.pos = 0
        self.size = 65 * 1024**3

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def read(self, n: int = -1) -> bytes:
        raise AssertionError("nothing may be read from an oversized upload")


def test_an_upload_over_gcms_limit_is_refused_before_anything_is_sent(setup: tuple[Any, str, str], wire: Wire) -> None:
    s3, bucket, _ = setup
    wire.clear()
    with pytest.raises(sse_guard.EncryptionError, match="64 GiB"):
        s3.upload_fileobj(_Huge(), bucket, "vault/huge", Config=PARTS)
    assert wire.sent == []


def test_the_64_gib_preflight_is_for_uploads_only(setup: tuple[Any, str, str], tmp_path: Path) -> None:
    s3, bucket, _ = setup
    s3.put_object(Bucket=bucket, Key="vault/small", Body=b"small")
    target = tmp_path / "sparse.bin"
    with target.open("wb") as f:
        f.truncate(65 * 1024**3)  # a sparse destination larger than GCM's limit
    with target.open("r+b") as f:
        s3.download_fileobj(bucket, "vault/small", f)
    with target.open("rb") as f:
        assert f.read(5) == b"small"


class _DropsMidway:
    """A response body whose connection breaks after ``after`` bytes."""

    def __init__(self, body: Any, after: int) -> None:
        self._body = body
        self._left = after

    def read(self, size: int = -1) -> bytes:
        from botocore.exceptions import IncompleteReadError

        if self._left <= 0:
            raise IncompleteReadError(actual_bytes=0, expected_bytes=1)
        data: bytes = self._body.read(min(size, self._left) if size and size > 0 else self._left)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._body.close()


def test_a_dropped_connection_is_a_network_error_and_download_file_retries_it(setup: tuple[Any, str, str], tmp_path: Path) -> None:
    from botocore.exceptions import IncompleteReadError

    s3, bucket, _ = setup
    data = os.urandom(3 * MiB)
    s3.put_object(Bucket=bucket, Key="vault/drop", Body=data)
    drops = {"left": 1}

    def break_once(parsed: dict[str, Any], **kwargs: Any) -> None:
        if drops["left"] and "Body" in parsed:
            drops["left"] -= 1
            parsed["Body"] = _DropsMidway(parsed["Body"], after=MiB)

    s3.meta.events.register_first("after-call.s3.GetObject", break_once)
    with pytest.raises(IncompleteReadError):  # not DecryptionError: the object is fine
        s3.get_object(Bucket=bucket, Key="vault/drop")
    drops["left"] = 1
    out = tmp_path / "drop.out"
    s3.download_file(bucket, "vault/drop", str(out))
    assert out.read_bytes() == data
    assert drops["left"] == 0


def test_audit_mode_leaves_client_side_writes_alone_and_still_reads_both(backend: Backend, tmp_path: Path, wire: Wire) -> None:
    bucket = backend.bucket("aud")
    backend.client("s3").create_bucket(Bucket=bucket)
    (tmp_path / "wrap.key").write_bytes(os.urandom(32))
    rules = {"rules": [{"bucket": bucket, "prefix": "vault/", "algorithm": "client-side", "keyring": {"type": "raw-aes", "key_file": "wrap.key"}}]}
    enforcing = backend.session()
    sse_guard.register(enforcing, policy=Policy.from_dict(rules, base_dir=tmp_path))
    enforcing.client("s3").put_object(Bucket=bucket, Key="vault/encrypted", Body=b"sealed")
    auditing = backend.session()
    guard = sse_guard.register(auditing, policy=Policy.from_dict(rules, base_dir=tmp_path), mode="audit")
    s3 = wire.attach(auditing.client("s3"))
    s3.put_object(Bucket=bucket, Key="vault/as-is", Body=b"left as given")
    stored = backend.client("s3").get_object(Bucket=bucket, Key="vault/as-is")
    assert stored["Body"].read() == b"left as given"
    assert "x-amz-c" not in stored["Metadata"]
    assert guard.stats.audited == 1
    assert s3.get_object(Bucket=bucket, Key="vault/as-is")["Body"].read() == b"left as given"
    assert s3.get_object(Bucket=bucket, Key="vault/encrypted")["Body"].read() == b"sealed"

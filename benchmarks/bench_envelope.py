"""Crypto-core throughput of sse_guard's envelope vs raw cryptography AES-256-GCM.

Run: .venv/bin/python benchmarks/bench_envelope.py [--mib 256] [--repeat 3]

Measures, on the same random data in one run (best of --repeat):
- raw ceiling: cryptography's streaming GCM encryptor, update_into 64 KiB chunks into a
  reused buffer (the fastest way to drive it from Python);
- sse_guard encrypt: EncryptingStream read in 1 MiB reads (what botocore does);
- sse_guard decrypt: decrypt_gcm_to_spool, authenticated, into a discarding sink (the
  crypto core) and into the real spool (in memory up to 8 MiB, then a temp file, as a
  GET does: that adds the file write);
- official client (amazon-s3-encryption-client-python), if installed: put_object and
  get_object on a smaller object through moto in-process, as wall time against plain
  boto3 on the same moto (its crypto cannot be driven without its S3 plumbing).
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sse_guard.envelope.cipher import (
    CHUNK_SIZE,
    V3_AAD,
    V3_IV,
    ContentKey,
    EncryptingStream,
    PlaintextSource,
    decrypt_gcm_to_spool,
)

MiB = 1024 * 1024


def best(repeat: int, fn: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def raw_encrypt(key: bytes, data: bytes) -> None:
    enc = Cipher(algorithms.AES(key), modes.GCM(V3_IV)).encryptor()
    enc.authenticate_additional_data(V3_AAD)
    out = bytearray(CHUNK_SIZE + 16)
    view = memoryview(data)
    for i in range(0, len(data), CHUNK_SIZE):
        enc.update_into(view[i : i + CHUNK_SIZE], out)
    enc.finalize()


def raw_decrypt(key: bytes, ciphertext: bytes) -> None:
    dec = Cipher(algorithms.AES(key), modes.GCM(V3_IV)).decryptor()
    dec.authenticate_additional_data(V3_AAD)
    out = bytearray(CHUNK_SIZE + 16)
    view = memoryview(ciphertext)[:-16]
    for i in range(0, len(view), CHUNK_SIZE):
        dec.update_into(view[i : i + CHUNK_SIZE], out)
    dec.finalize_with_tag(ciphertext[-16:])


def ours_encrypt(content: ContentKey, data: bytes) -> bytes:
    stream = EncryptingStream(PlaintextSource(data), content.gcm_encryptor, tag_from_cipher=True)
    pieces = []
    while True:
        chunk = stream.read(MiB)
        if not chunk:
            break
        pieces.append(chunk)
    return b"".join(pieces)


def ours_encrypt_discard(content: ContentKey, data: bytes) -> None:
    stream = EncryptingStream(PlaintextSource(data), content.gcm_encryptor, tag_from_cipher=True)
    while stream.read(MiB):
        pass


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        return len(b)  # type: ignore[arg-type]

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0


def ours_decrypt(content: ContentKey, ciphertext: bytes, *, spool: bool) -> None:
    factory = {} if spool else {"spool_factory": _Discard}
    out, _ = decrypt_gcm_to_spool(io.BytesIO(ciphertext).read, content, len(ciphertext), **factory)  # type: ignore[arg-type]
    out.close()


def official(data: bytes, repeat: int) -> tuple[float, float, float, float] | None:
    try:
        import boto3
        from moto import mock_aws
        from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
        from s3_encryption.materials.kms_keyring import KmsKeyring
    except ImportError:
        return None
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        os.environ.setdefault(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        kms = boto3.client("kms", region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        client = S3EncryptionClient(
            wrapped_s3_client=s3,
            config=S3EncryptionClientConfig(keyring=KmsKeyring(kms_client=kms, kms_key_id=key_id)),
        )
        plain_put = best(repeat, lambda: s3.put_object(Bucket="bench", Key="p", Body=data))
        plain_get = best(repeat, lambda: s3.get_object(Bucket="bench", Key="p")["Body"].read())
        put = best(repeat, lambda: client.put_object(Bucket="bench", Key="o", Body=data))
        get = best(repeat, lambda: client.get_object(Bucket="bench", Key="o")["Body"].read())
    return plain_put, put, plain_get, get


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-official", action="store_true")
    parser.add_argument("--official-mib", type=int, default=32)
    args = parser.parse_args()
    data = os.urandom(args.mib * MiB)
    key = os.urandom(32)
    content = ContentKey(key, V3_IV, V3_AAD)
    ciphertext = ours_encrypt(content, data)

    def rate(seconds: float) -> float:
        return args.mib / seconds

    raw_enc = rate(best(args.repeat, lambda: raw_encrypt(key, data)))
    raw_dec = rate(best(args.repeat, lambda: raw_decrypt(key, ciphertext)))
    enc = rate(best(args.repeat, lambda: ours_encrypt_discard(content, data)))
    dec = rate(best(args.repeat, lambda: ours_decrypt(content, ciphertext, spool=False)))
    dec_spool = rate(best(args.repeat, lambda: ours_decrypt(content, ciphertext, spool=True)))
    print(f"object: {args.mib} MiB, best of {args.repeat}")
    print(f"raw cryptography GCM encrypt  {raw_enc:8.0f} MiB/s")
    print(f"sse_guard encrypt (stream)    {enc:8.0f} MiB/s  {enc / raw_enc:6.1%} of raw")
    print(f"raw cryptography GCM decrypt  {raw_dec:8.0f} MiB/s")
    print(f"sse_guard decrypt (verified)  {dec:8.0f} MiB/s  {dec / raw_dec:6.1%} of raw")
    print(f"  + 8 MiB/tempfile spool      {dec_spool:8.0f} MiB/s  {dec_spool / raw_dec:6.1%} of raw")
    if not args.no_official:
        small = data[: args.official_mib * MiB]
        result = official(small, 1)
        if result is None:
            print("official client: not installed")
        else:
            plain_put, put, plain_get, get = result
            print(f"official client on moto in-process, {args.official_mib} MiB (wall time vs plain boto3):")
            print(f"  put_object {put:6.2f} s vs {plain_put:6.2f} s  ({put / plain_put:4.2f}x)")
            print(f"  get_object {get:6.2f} s vs {plain_get:6.2f} s  ({get / plain_get:4.2f}x)")


if __name__ == "__main__":
    main()

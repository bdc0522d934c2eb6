"""The README's first command: the demo runs every part end to end and says so."""

from __future__ import annotations

import io

from sse_guard import demo


def test_the_demo_shows_every_part_working() -> None:
    out = io.StringIO()
    assert demo.main([], out=out) == 0
    text = out.getvalue()
    assert "THIS IS A BUG" not in text
    assert "-> CreateMultipartUpload    sse=aws:kms" in text
    assert "-> UploadPart               (no SSE headers)" in text
    assert "the legacy object is still NOT encrypted" in text
    assert "plaintext visible to S3: False" in text
    assert "DecryptionError, no plaintext released" in text
    assert "PolicyViolation" in text
    assert "NOT-SSE      s3://demo-legacy/reports/2019.csv" in text
    assert "re-encrypted as SSE-S3" in text
    assert "tags ['retention=7y']: kept" in text

"""The application under test: it stores reports and archives old ones in S3.

It takes a boto3 session (production code makes one and calls sse_guard.register on it
at start-up); it never mentions encryption itself.
"""

from __future__ import annotations

from typing import Any

import boto3


class ReportStore:
    def __init__(self, session: boto3.Session, bucket: str) -> None:
        self._s3: Any = session.client("s3")
        self.bucket = bucket

    def save_customer(self, customer_id: str, body: bytes) -> str:
        key = f"pii/customers/{customer_id}.json"
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        return key

    def save_public(self, name: str, body: bytes, **extra: Any) -> str:
        key = f"public/{name}"
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
        return key

    def archive(self, source_bucket: str, key: str) -> str:
        """Copy an object from an older bucket into this one, under archive/."""
        target = f"archive/{key}"
        self._s3.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": source_bucket, "Key": key})
        return target

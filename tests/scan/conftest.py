"""Fixtures for the scanner and fixer tests (helpers live in scan_helpers.py)."""

from __future__ import annotations

from typing import Any

import pytest
from scan_helpers import Faults, Keys


@pytest.fixture
def kms_keys(backend: Any) -> Keys:
    kms = backend.client("kms")
    a = kms.create_key(Description="key A")["KeyMetadata"]["Arn"]
    b = kms.create_key(Description="key B")["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName=f"alias/key-a-{a.rsplit('/', 1)[-1][:8]}", TargetKeyId=a)
    return Keys(a=a, b=b)


@pytest.fixture
def faults() -> Faults:
    return Faults()

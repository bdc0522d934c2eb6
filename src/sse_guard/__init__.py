"""sse_guard: every S3 object a Python program writes lands encrypted as policy requires.

This module is the table of contents: everything public is re-exported here.
"""

from . import errors
from .errors import (
    BucketEncryptionLookupError,
    ConfigurationError,
    DecryptionError,
    EncryptionError,
    PolicyViolation,
    SSEGuardError,
)
from .guard import Guard, GuardStats, register
from .policy import BucketDefault, Policy, Rule
from .settings import DSSEKMS, FOLLOW_BUCKET, SSEC, SSEKMS, SSES3, ClientSide

__version__ = "0.1.0"

__all__ = [
    "DSSEKMS",
    "FOLLOW_BUCKET",
    "SSEC",
    "SSEKMS",
    "SSES3",
    "BucketDefault",
    "BucketEncryptionLookupError",
    "ClientSide",
    "ConfigurationError",
    "DecryptionError",
    "EncryptionError",
    "Guard",
    "GuardStats",
    "Policy",
    "PolicyViolation",
    "Rule",
    "SSEGuardError",
    "__version__",
    "errors",
    "register",
]

"""The exceptions sse_guard raises.

::

    SSEGuardError
    ├── ConfigurationError            a policy, keyring or option is malformed or unusable
    ├── PolicyViolation               enforce mode refused a write before anything was sent
    ├── BucketEncryptionLookupError   the bucket's default encryption could not be read
    │                                 (fail closed: the write was not sent)
    ├── DecryptionError               any way client-side decryption can fail, on purpose
    │                                 one opaque error so nothing tells an attacker which
    │                                 check failed
    └── EncryptionError               client-side encryption could not be applied

Foreign exceptions are translated in one place each and raised ``from`` the original, so
the cause stays on ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "BucketEncryptionLookupError",
    "ConfigurationError",
    "DecryptionError",
    "EncryptionError",
    "PolicyViolation",
    "SSEGuardError",
]


class SSEGuardError(Exception):
    """Root of every exception sse_guard raises."""


class ConfigurationError(SSEGuardError, ValueError):
    """A policy file, rule, keyring or option is malformed or cannot be used."""


class PolicyViolation(SSEGuardError):
    """Enforce mode refused a write whose explicit parameters contradict the policy.

    Raised before the request is sent. ``operation``, ``bucket`` and ``key`` say which
    write; ``required`` and ``given`` describe the two encryptions, never key material.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        bucket: str = "",
        key: str = "",
        required: str = "",
        given: str = "",
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.bucket = bucket
        self.key = key
        self.required = required
        self.given = given


class BucketEncryptionLookupError(SSEGuardError):
    """GetBucketEncryption failed, so the required encryption is unknown.

    The write it guarded was not sent (fail closed), unless the policy says
    ``on_lookup_error = "fallback"``.
    """

    def __init__(self, message: str, *, bucket: str = "") -> None:
        super().__init__(message)
        self.bucket = bucket


class DecryptionError(SSEGuardError):
    """Client-side decryption failed. One error for every cause, deliberately opaque."""


class EncryptionError(SSEGuardError):
    """Client-side encryption could not be applied to a write (it was not sent)."""

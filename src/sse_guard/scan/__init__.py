"""Find and fix objects whose encryption falls short of the policy.

``scan`` / ``Scanner`` list and inspect objects (one record each), ``read_inventory``
classifies an S3 Inventory report without a request per object, ``Fixer`` re-encrypts
findings in place, ``plan_batch_job`` / ``submit_batch_job`` hand the bulk to S3 Batch
Operations, and ``audit_buckets`` checks bucket-level settings.
"""

from ._classify import Classifier, Observed, client_side_format, judge, observe_head
from ._concurrency import AdaptiveLimit
from ._fix import Fixer, FixResult
from ._records import CLASSES, RECORD_KEYS, ScanRecord
from ._scanner import (
    Scanner,
    ScanStats,
    ScanTarget,
    make_classifier,
    make_s3_client,
    parse_s3_url,
    scan,
)

__all__ = [
    "CLASSES",
    "RECORD_KEYS",
    "AdaptiveLimit",
    "Classifier",
    "FixResult",
    "Fixer",
    "Observed",
    "ScanRecord",
    "ScanStats",
    "ScanTarget",
    "Scanner",
    "client_side_format",
    "judge",
    "make_classifier",
    "make_s3_client",
    "observe_head",
    "parse_s3_url",
    "scan",
]

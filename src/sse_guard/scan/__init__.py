"""Find and fix objects whose encryption falls short of the policy.

``scan`` / ``Scanner`` list and inspect objects (one record each), ``read_inventory``
classifies an S3 Inventory report without a request per object, ``Fixer`` re-encrypts
findings in place, ``plan_batch_job`` / ``submit_batch_job`` hand the bulk to S3 Batch
Operations, and ``audit_buckets`` checks bucket-level settings.
"""

from ._batch import (
    BATCH_LIMITS,
    BatchPlan,
    manifest_csv,
    plan_batch,
    submit_batch,
    submit_generated_batch,
)
from ._classify import Classifier, Observed, client_side_format, judge, observe_head
from ._concurrency import AdaptiveLimit
from ._fix import Fixer, FixResult
from ._inventory import (
    InventoryError,
    InventoryManifest,
    InventoryReader,
    read_inventory,
    read_manifest,
)
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
    "BATCH_LIMITS",
    "CLASSES",
    "RECORD_KEYS",
    "AdaptiveLimit",
    "BatchPlan",
    "Classifier",
    "FixResult",
    "Fixer",
    "InventoryError",
    "InventoryManifest",
    "InventoryReader",
    "Observed",
    "ScanRecord",
    "ScanStats",
    "ScanTarget",
    "Scanner",
    "client_side_format",
    "judge",
    "make_classifier",
    "make_s3_client",
    "manifest_csv",
    "observe_head",
    "parse_s3_url",
    "plan_batch",
    "read_inventory",
    "read_manifest",
    "scan",
    "submit_batch",
    "submit_generated_batch",
]

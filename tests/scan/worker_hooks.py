"""``S3ClientSpec.setup`` hooks for the worker-process tests (module level: pickled by reference).

They run inside the HEAD worker processes, on the client each one builds.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Any

from scan_helpers import SLOWDOWN, Faults


def kill_once_on(marker: str, key_suffix: str, client: Any) -> None:
    """The first worker (of all of them) to HEAD ``key_suffix`` dies on the spot."""

    def handler(request: Any, **kwargs: Any) -> None:
        if request.method == "HEAD" and request.url.endswith(key_suffix):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            os._exit(17)

    client.meta.events.register_first("before-send.s3", handler, unique_id="kill-once")


def kill_always_on(key_suffix: str, client: Any) -> None:
    """Every worker that HEADs ``key_suffix`` dies (a key that kills whoever reads it)."""

    def handler(request: Any, **kwargs: Any) -> None:
        if request.method == "HEAD" and request.url.endswith(key_suffix):
            os._exit(19)

    client.meta.events.register_first("before-send.s3", handler, unique_id="kill-always")


def throttle_twice(client: Any) -> None:
    """Every HEAD is answered SlowDown twice, then passes (as in test_scan_wire)."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def throttled(request: Any) -> bool:
        if request.method != "HEAD":
            return False
        with lock:
            seen[request.url] += 1
            return seen[request.url] <= 2

    faults = Faults()
    faults.when(throttled, 503, SLOWDOWN)
    faults.attach(client)

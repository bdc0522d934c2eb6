"""Concurrency that adapts to S3's SlowDown: additive increase, multiplicative decrease.

S3 answers 503 SlowDown past about 5,500 GET/HEAD per second per partitioned prefix.
Instead of failing, the scanner halves how many requests it keeps in flight (at most once
per ``cooldown`` seconds, so one burst of throttles counts once) and grows back by about
one slot per window of successes.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

__all__ = ["AdaptiveLimit", "backoff_delay", "error_kind"]

THROTTLE_CODES = frozenset(
    {
        "SlowDown",
        "503",
        "ServiceUnavailable",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
    }
)
TRANSIENT_CODES = frozenset({"500", "502", "504", "InternalError", "RequestTimeout", "RequestTimeoutException"})


def error_kind(exc: BaseException) -> str:
    """``throttle``, ``transient``, ``not-found``, ``bad-request``, ``denied`` or ``fatal``."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in THROTTLE_CODES or status in (429, 503):
            return "throttle"
        if code in TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
            return "transient"
        if code in ("404", "NoSuchKey", "NotFound", "NoSuchVersion"):
            return "not-found"
        if code in ("400", "BadRequest") or status == 400:
            return "bad-request"
        if code in ("403", "AccessDenied", "Forbidden") or status == 403:
            return "denied"
        return "fatal"
    if isinstance(exc, BotoCoreError):
        return "transient"
    return "fatal"


def error_text(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code") or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        message = err.get("Message")
        return f"{code}: {message}" if message else str(code)
    return f"{type(exc).__name__}: {exc}"


def backoff_delay(attempt: int, *, base: float = 0.05, cap: float = 5.0) -> float:
    """Full-jitter exponential backoff."""
    return random.uniform(0, min(cap, base * (2**attempt)))


class AdaptiveLimit:
    """A concurrency limit between ``minimum`` and ``maximum`` that threads acquire."""

    def __init__(
        self,
        initial: int,
        maximum: int,
        *,
        minimum: int = 1,
        cooldown: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError("need 1 <= minimum <= initial <= maximum")
        self._limit = float(initial)
        self._min = minimum
        self._max = maximum
        self._cooldown = cooldown
        self._clock = clock
        self._last_cut = -1e9
        self._in_flight = 0
        self._cond = threading.Condition()
        self.throttles = 0
        self.cuts = 0
        self.lowest = initial
        self.highest = initial

    @property
    def limit(self) -> int:
        return int(self._limit)

    def acquire(self) -> None:
        with self._cond:
            while self._in_flight >= int(self._limit):
                self._cond.wait()
            self._in_flight += 1

    def release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify()

    def on_success(self) -> None:
        with self._cond:
            if self._limit < self._max:
                before = int(self._limit)
                self._limit = min(float(self._max), self._limit + 1.0 / self._limit)
                if int(self._limit) > before:
                    self.highest = max(self.highest, int(self._limit))
                    self._cond.notify()

    def on_throttle(self) -> None:
        with self._cond:
            self.throttles += 1
            now = self._clock()
            if now - self._last_cut < self._cooldown:
                return
            self._last_cut = now
            self.cuts += 1
            self._limit = max(float(self._min), self._limit / 2)
            self.lowest = min(self.lowest, int(self._limit))

"""Retries with capped exponential backoff and full jitter for object-store requests.

Each backend classifies an exception into one of three outcomes:

* a *transient* failure (throttling, 5xx, connection reset/refused, timeouts) is retried;
* a *permanent* failure (missing object or bucket, denied or missing credentials) becomes a
  :class:`~model_hub_mmdet.errors.DataError` at once, naming the bucket and key;
* anything else is a bug or an unexpected condition and propagates unchanged.

Equal jitter (sleep a uniform time in ``[d/2, d]`` with ``d = min(cap, base * 2**attempt)``) keeps many
data-loader workers that failed together from retrying in lock step against a throttling server, while the
total patience stays predictable: with the defaults (12 attempts, 0.1 s base, 10 s cap) a request keeps trying
for 31-63 s, so a store that is unreachable for 20 s costs a pause, not the run.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from model_hub_mmdet.errors import DataError

logger = logging.getLogger(__name__)
T = TypeVar("T")


RETRY = "retry"  # the verdict for a transient failure: back off and try again


@dataclass
class RetryPolicy:
    """How often and how patiently to retry transient storage failures.

    ``attempts`` counts every try, the first included. ``on_retry(attempt, error, delay)`` is called before each
    sleep (for logging, metrics, or tests that need to act between attempts).
    """

    attempts: int = 12
    base: float = 0.1
    cap: float = 10.0
    on_retry: Callable[[int, BaseException, float], None] | None = None
    _rng: random.Random = field(default_factory=lambda: random.Random(os.urandom(8)), repr=False)

    def delay(self, attempt: int) -> float:
        """Seconds to sleep after failed try number ``attempt`` (0-based): equal jitter over a capped exponential."""
        nominal = min(self.cap, self.base * (2**attempt))
        return self._rng.uniform(nominal / 2, nominal)

    def call(
        self,
        fn: Callable[[], T],
        classify: Callable[[BaseException], BaseException | str | None],
        what: str,
        give_up: Callable[[BaseException, int, float], BaseException] | None = None,
    ) -> T:
        """Run ``fn`` until it succeeds, ``classify`` calls a failure permanent, or the attempts run out.

        ``classify(err)`` returns :data:`RETRY`, an exception to raise instead (permanent), or ``None``
        (not a storage failure: re-raise unchanged). ``what`` names the object in log lines and the final error.
        ``give_up(last_error, attempts, seconds)`` makes the error raised when the attempts run out (default: a
        :class:`DataError` that points at the endpoint and ``file_client_args.retries``).
        """
        started = time.monotonic()
        for attempt in range(self.attempts):
            try:
                return fn()
            except Exception as err:  # noqa: BLE001 - classified below, unknown errors are re-raised
                verdict = classify(err)
                if verdict is None:
                    raise
                if isinstance(verdict, BaseException):
                    raise verdict from err
                if attempt + 1 >= self.attempts:
                    elapsed = time.monotonic() - started
                    if give_up is not None:
                        raise give_up(err, self.attempts, elapsed) from err
                    raise DataError(
                        f"{what}: still failing after {self.attempts} attempts over {elapsed:.1f} s"
                        f" ({type(err).__name__}: {first_line(err)}); check that the storage endpoint is reachable"
                        " or raise file_client_args.retries"
                    ) from err
                pause = self.delay(attempt)
                logger.warning("%s: %s: %s; retrying in %.2f s (attempt %d of %d)", what, type(err).__name__,
                               first_line(err), pause, attempt + 2, self.attempts)
                if self.on_retry is not None:
                    self.on_retry(attempt, err, pause)
                time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, at most 300 characters ("" for an empty message)."""
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else ""

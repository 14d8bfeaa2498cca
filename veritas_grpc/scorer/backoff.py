"""Exponential backoff with full jitter: replicas that lost the server at the same moment
do not all come back at the same moment."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """delay(n) is uniform in [0, min(cap, base * 2**n)] for the n-th retry in a row."""

    def __init__(
        self,
        base_seconds: float = 0.25,
        cap_seconds: float = 15.0,
        uniform: Callable[[], float] = random.random,
    ) -> None:
        self._base = base_seconds
        self._cap = cap_seconds
        self._uniform = uniform
        self.failures = 0

    def ceiling(self) -> float:
        # min() before the power would overflow after ~1,000 failures in a row.
        exponent = min(self.failures, 60)
        return min(self._cap, self._base * 2**exponent)

    def next_delay(self) -> float:
        delay = self._uniform() * self.ceiling()
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0

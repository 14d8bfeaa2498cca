"""Exponential backoff with full jitter (the AWS Architecture Blog's "full jitter"):
the n-th consecutive failure waits a uniformly random time in [0, min(cap, base * 2**n)].

The randomness spreads 1,000 agents that lost the same server at the same moment over
the whole window, so the restarted server is not hit by all of them in one instant.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None):
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The longest wait the next failure may bring."""
        # min() before the power would overflow for a long outage; the exponent is capped.
        return min(self.cap, self.base * 2 ** min(self.failures, 62))

    def next_delay(self) -> float:
        delay = self._rng.uniform(0, self.ceiling())
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0

"""Predictions waiting for their ground-truth label: bounded in size and in age.

Oldest entries are evicted when full; an entry older than the TTL is expired. Unknown, expired or
malformed feedback items are reported one by one and never fail the rest of a batch.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Prediction:
    experiment: str | None
    model: str  # family
    variant: str
    classes: tuple[int, ...]  # one per row of the request
    created: float
    shadow: dict[str, tuple[int, ...]] = field(default_factory=dict)  # shadow variant -> its classes
    shadow_pending: str | None = None  # a shadow variant whose answer is still on its way


class PredictionStore:
    def __init__(self, capacity: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = capacity
        self._ttl = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, Prediction] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, request_id: str, prediction: Prediction) -> None:
        self._entries[request_id] = prediction
        self._entries.move_to_end(request_id)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
            self.evicted += 1

    def get(self, request_id: str) -> Prediction | None:
        return self._entries.get(request_id)

    def take(self, request_id: str) -> tuple[str, Prediction | None]:
        """Remove and return the prediction to label: ("ok", p), ("unknown id", None) or ("expired", None)."""
        prediction = self._entries.pop(request_id, None)
        if prediction is None:
            return "unknown id", None
        if self._clock() - prediction.created > self._ttl:
            return "expired", None
        return "ok", prediction

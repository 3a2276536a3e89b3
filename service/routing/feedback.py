"""Predictions waiting for their ground-truth label: bounded in size and in age.

Oldest entries are evicted when full; an entry older than the TTL is expired. Unknown, expired or
malformed feedback items are reported one by one and never fail the rest of a batch.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class Prediction:
    experiment: str | None
    model: str  # family
    variant: str
    classes: tuple[int, ...]  # one per row of the request
    created: float  # wall-clock seconds (time.time): replicas compare it against a shared TTL
    shadow_variant: str | None = None  # set when a shadow copy was queued (one per request at most)
    shadow_classes: tuple[int, ...] | None = None  # its answer; None while still on its way
    stages: tuple[str, str] | None = None  # a cascade arm's answer: its first and second stage
    escalated_rows: tuple[int, ...] = ()  # the rows the second stage answered

    @property
    def shadow_pending(self) -> bool:
        return self.shadow_variant is not None and self.shadow_classes is None


class PredictionStore:
    def __init__(self, capacity: int, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
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

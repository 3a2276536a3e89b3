"""Experiment state in Redis: predictions awaiting labels and tallies, shared by every replica.

The response path only appends to local buffers; one background task writes them behind in a single
pipeline per round (predictions through one script call, counts merged into one HINCRBY per field), so a
request never waits for Redis and a busy replica sends few, large writes. Joins are atomic scripts: a label
takes its prediction exactly once, whichever replica it reaches. Keys are built inside the scripts, so this
needs one Redis (or a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from service.errors import StateUnavailable
from service.routing.feedback import Prediction
from service.routing.redis_link import KEY_PREFIX, RedisLink
from service.routing.state import OnLateLabels, Taken
from service.routing.tally import COUNTS, ExperimentTallies, latency_bucket
from service.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PREDICTION = f"{KEY_PREFIX}prediction:"
# list of request ids, oldest first: the capacity bound evicts from its head (ids joined since stay in it, so
# it keeps at most the last `capacity` predictions made, fleet-wide; expired ones are gone already)
INDEX = f"{KEY_PREFIX}predictions"
EARLY = f"{KEY_PREFIX}early-label:"  # a label that came before its shadow's answer
TALLY = f"{KEY_PREFIX}tally:"  # hash per experiment and variant: COUNTS and latency buckets
LATENCY_FIELD = "latency-bucket-"
VARIANTS = f"{KEY_PREFIX}variants:"  # set per experiment: variants with a tally
DROPPED = f"{KEY_PREFIX}shadow-dropped"  # hash: experiment -> copies dropped
FLUSH_EVERY_S = 0.01  # gathers a round's writes: fewer, larger pipelines; a label racing its prediction waits
MAX_BUFFERED = 20_000  # predictions (and shadow answers) waiting to be written; more are counted as lost
CHUNK = 500  # predictions per script call
EARLY_LABEL_TTL_MS = 600_000
FAILED_BACKOFF_S = 0.5

REMEMBER = """
local ids = cjson.decode(ARGV[3])
local index = 0
for value in string.gmatch(ARGV[4], '[^\\n]+') do
  index = index + 1
  redis.call('SET', KEYS[2] .. ids[index], value, 'PX', ARGV[1])
end
redis.call('RPUSH', KEYS[1], unpack(ids))
local over = redis.call('LLEN', KEYS[1]) - tonumber(ARGV[2])
if over <= 0 then return 0 end
for _, id in ipairs(redis.call('LPOP', KEYS[1], over)) do redis.call('DEL', KEYS[2] .. id) end
return over
"""
TAKE = """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local prediction = cjson.decode(value)
if #prediction.c ~= tonumber(ARGV[1]) then return {'rows', value} end
redis.call('DEL', KEYS[1])
if prediction.sv and not prediction.sc then redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
return {'ok', value}
"""
ANSWER_SHADOW = """
local value = redis.call('GET', KEYS[1])
if value then
  local prediction = cjson.decode(value)
  prediction.sc = cjson.decode(ARGV[1])
  redis.call('SET', KEYS[1], cjson.encode(prediction), 'KEEPTTL')
  return false
end
return redis.call('GETDEL', KEYS[2])
"""


def fields_of(prediction: Prediction) -> dict[str, Any]:
    """A prediction as stored (JSON, encoded with its round): short keys, no nulls (Lua's cjson reads null as
    a true value)."""
    fields: dict[str, Any] = {"m": prediction.model, "v": prediction.variant, "c": prediction.classes,
                              "t": prediction.created}  # fmt: skip
    if prediction.experiment is not None:
        fields["e"] = prediction.experiment
    if prediction.shadow_variant is not None:
        fields["sv"] = prediction.shadow_variant
    if prediction.shadow_classes is not None:
        fields["sc"] = prediction.shadow_classes
    if prediction.stages is not None:
        fields["s"] = prediction.stages
        fields["x"] = prediction.escalated_rows
    return fields


def decode(value: str) -> Prediction:
    fields = json.loads(value)
    shadow_classes = fields.get("sc")
    return Prediction(fields.get("e"), fields["m"], fields["v"], tuple(fields["c"]), float(fields["t"]),
                      fields.get("sv"), tuple(shadow_classes) if shadow_classes else None,
                      tuple(fields["s"]) if "s" in fields else None, tuple(fields.get("x", ())))  # fmt: skip


@dataclass(slots=True)
class _Round:
    """The writes gathered since the last round."""

    predictions: list[tuple[str, dict[str, Any]]]
    counts: Counter[tuple[str, str]]  # (hash key, field) -> increment
    variants: set[tuple[str, str]]
    dropped: Counter[str]
    shadow_answers: list[tuple[str, str, OnLateLabels]]

    @classmethod
    def empty(cls) -> _Round:
        return cls([], Counter(), set(), Counter(), [])

    def __bool__(self) -> bool:
        return bool(self.predictions or self.counts or self.dropped or self.shadow_answers)


class RedisState:
    # a label racing its prediction's write from another replica waits this long once (a round, a round trip)
    write_behind_s = 0.1

    def __init__(self, link: RedisLink, capacity: int, ttl_s: float) -> None:
        self._link = link
        self._client = link.client
        self._outage = link.outage
        self._timeout_s = link.timeout_s
        self._capacity = capacity
        self._ttl_s = ttl_s
        self._round = _Round.empty()
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._writer: asyncio.Task[None] | None = None
        self._remember = self._client.register_script(REMEMBER)
        self._take = self._client.register_script(TAKE)
        self._answer_shadow = self._client.register_script(ANSWER_SHADOW)
        self._scripts_loaded = False

    # the response path: buffer only
    def remember(self, request_id: str, prediction: Prediction) -> None:
        if len(self._round.predictions) >= MAX_BUFFERED:
            self._outage.lost("prediction", 1, TimeoutError("write-behind buffer full"))
            return
        self._round.predictions.append((request_id, fields_of(prediction)))
        self._wake.set()

    def count(
        self, experiment: str, variant: str, counts: dict[str, int], latency_s: float | None = None
    ) -> None:
        key = f"{TALLY}{experiment}:{variant}"
        for name, value in counts.items():
            self._round.counts[key, name] += value
        if latency_s is not None:
            self._round.counts[key, f"{LATENCY_FIELD}{latency_bucket(latency_s)}"] += 1
        self._round.variants.add((experiment, variant))
        self._wake.set()

    def count_shadow_dropped(self, experiment: str) -> None:
        self._round.dropped[experiment] += 1
        self._wake.set()

    def answer_shadow(self, request_id: str, classes: tuple[int, ...], on_late_labels: OnLateLabels) -> None:
        if len(self._round.shadow_answers) >= MAX_BUFFERED:
            self._outage.lost("shadow_answer", 1, TimeoutError("write-behind buffer full"))
            return
        self._round.shadow_answers.append((request_id, json.dumps(classes), on_late_labels))
        self._wake.set()

    # writing behind
    async def start(self) -> None:
        self._writer = asyncio.create_task(self._write_behind(), name="experiment-state-writer")

    async def stop(self) -> None:
        await cancel_and_wait(self._writer)
        with contextlib.suppress(StateUnavailable):
            await self.settle()  # what this replica still holds, before it goes
        await self._client.aclose()

    async def _write_behind(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(FLUSH_EVERY_S)
            self._wake.clear()
            try:
                await self.settle()
            except StateUnavailable:
                await asyncio.sleep(FAILED_BACKOFF_S)
            except Exception:  # a bug in one round must not stop the writer for good
                log.exception("experiment state: a write-behind round failed")
                await asyncio.sleep(FAILED_BACKOFF_S)

    async def settle(self) -> None:
        """Write what is buffered now, in order after any round already on its way; StateUnavailable if not."""
        async with self._flushing:
            batch, self._round = self._round, _Round.empty()
            if batch:
                await self._write(batch)

    async def _write(self, batch: _Round) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                if not self._scripts_loaded:  # once per connection to a server (a restarted one forgets them)
                    for script in (self._remember, self._answer_shadow):
                        await self._client.script_load(script.script)
                    self._scripts_loaded = True
                pipe, answered_from = self._pipeline(batch)
                results = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._scripts_loaded = False
            self._outage.lost("prediction", len(batch.predictions), exc)
            self._outage.lost("count", sum(batch.counts.values()) + sum(batch.dropped.values()), exc)
            self._outage.lost("shadow_answer", len(batch.shadow_answers), exc)
            raise StateUnavailable("the experiment state (Redis) cannot be reached") from None
        self._outage.recovered()
        for (_, _, on_late_labels), labels in zip(batch.shadow_answers, results[answered_from:], strict=True):
            if labels:
                on_late_labels(json.loads(labels))

    def _pipeline(self, batch: _Round) -> tuple[Pipeline, int]:
        """One round as one pipeline; also where the shadow answers' results start in it."""
        pipe = self._client.pipeline(transaction=False)
        keep_ms = int(self._ttl_s * 2 * 1000)  # kept past the TTL so a late label hears "expired"
        for start in range(0, len(batch.predictions), CHUNK):  # ids as JSON, predictions one per line
            chunk = batch.predictions[start : start + CHUNK]
            ids = json.dumps([request_id for request_id, _ in chunk])
            values = "\n".join(
                json.dumps(fields, separators=(",", ":")) for _, fields in chunk
            )  # ASCII: no raw \n
            pipe.evalsha(self._remember.sha, 2, INDEX, PREDICTION, keep_ms, self._capacity, ids, values)
        for (key, name), increment in batch.counts.items():
            pipe.hincrby(key, name, increment)
        for experiment, variant in batch.variants:
            pipe.sadd(f"{VARIANTS}{experiment}", variant)
        for experiment, dropped in batch.dropped.items():
            pipe.hincrby(DROPPED, experiment, dropped)
        answered_from = len(pipe)
        for request_id, classes, _ in batch.shadow_answers:
            pipe.evalsha(
                self._answer_shadow.sha, 2, f"{PREDICTION}{request_id}", f"{EARLY}{request_id}", classes
            )
        return pipe, answered_from

    # joins and reports: these wait for Redis
    async def take(self, request_id: str, labels: list[int]) -> Taken:
        keys = [f"{PREDICTION}{request_id}", f"{EARLY}{request_id}"]
        args: list[str | int] = [len(labels), json.dumps(labels), EARLY_LABEL_TTL_MS]
        found = await self._link.call(self._take(keys=keys, args=args))
        if not found:
            return Taken("unknown id")
        status, value = found
        prediction = decode(value)
        if status == "rows":
            return Taken(f"needs {len(prediction.classes)} labels, got {len(labels)}")
        if time.time() - prediction.created > self._ttl_s:
            return Taken("expired")
        return Taken("ok", prediction)

    async def tallies(self, experiment: str) -> ExperimentTallies:
        variants = sorted(await self._link.call(self._client.smembers(f"{VARIANTS}{experiment}")))
        pipe = self._client.pipeline(transaction=False)
        for variant in variants:
            pipe.hgetall(f"{TALLY}{experiment}:{variant}")
        pipe.hget(DROPPED, experiment)
        *hashes, dropped = await self._link.call(pipe.execute())
        tallies = ExperimentTallies(shadow_dropped=int(dropped or 0))
        for variant, fields in zip(variants, hashes, strict=True):
            tally = tallies.of(variant)
            tally.add({name: int(fields.get(name, 0)) for name in COUNTS})
            tally.latency.update(
                {
                    int(name.removeprefix(LATENCY_FIELD)): int(value)
                    for name, value in fields.items()
                    if name.startswith(LATENCY_FIELD)
                }
            )
        return tallies

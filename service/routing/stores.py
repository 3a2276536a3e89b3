"""Choose where experiment state lives: in this process, or in the Redis ``routing.redis_url`` names."""

from __future__ import annotations

from dataclasses import dataclass

from service.config import Settings
from service.metrics import ServiceMetrics
from service.routing.local_state import FileConfig, FileLedger, InProcessState, ledger_path
from service.routing.redis_config import RedisConfig
from service.routing.redis_link import Outage, RedisLink, connect
from service.routing.redis_rollout import RedisLedger
from service.routing.redis_state import RedisState
from service.routing.state import ExperimentsConfig, ExperimentState, RolloutLedger


@dataclass(frozen=True, slots=True)
class ExperimentStores:
    state: ExperimentState
    config: ExperimentsConfig
    ledger: RolloutLedger


def experiment_stores(settings: Settings, metrics: ServiceMetrics) -> ExperimentStores:
    routing = settings.routing
    if routing.redis_url is None:
        state = InProcessState(routing.feedback_capacity, routing.feedback_ttl_s, routing.shadow_queue_size)
        ledger = FileLedger(ledger_path(routing.experiments_file))
        return ExperimentStores(state, FileConfig(routing.experiments_file), ledger)
    client = connect(routing.redis_url, routing.redis_timeout_s)  # connects lazily: nothing happens yet
    link = RedisLink(client, Outage(metrics), routing.redis_timeout_s)
    return ExperimentStores(
        RedisState(link, routing.feedback_capacity, routing.feedback_ttl_s),
        RedisConfig(link),
        RedisLedger(link),
    )

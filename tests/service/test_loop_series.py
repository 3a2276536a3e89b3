"""The request path's lock-free series expose exactly what prometheus_client's own metrics do."""

from __future__ import annotations

import math
import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from service.metrics import BATCH_BUCKETS, LATENCY_BUCKETS
from service.metrics.loop_series import LoopCounter, LoopGauge, LoopHistogram

LABELS = ("model", "protocol")
CREATED = re.compile(rb"(_created\{[^}]*\}) \S+")


def exposition(registry: CollectorRegistry) -> bytes:
    return CREATED.sub(rb"\1 <time>", generate_latest(registry))


def test_the_same_observations_give_the_same_exposition_as_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    histograms = (
        LoopHistogram("t_seconds", "Latency.", LABELS, ours, LATENCY_BUCKETS),
        Histogram("t_seconds", "Latency.", LABELS, registry=theirs, buckets=LATENCY_BUCKETS),
    )
    counters = (
        LoopCounter("t_requests", "Requests.", LABELS, ours),
        Counter("t_requests", "Requests.", LABELS, registry=theirs),
    )
    gauges = (
        LoopGauge("t_in_flight", "In flight.", LABELS, ours),
        Gauge("t_in_flight", "In flight.", LABELS, registry=theirs),
    )
    values = [0.0, 0.0001, 0.00011, 0.003, 0.0025, 0.7, 10.0, 11.0, 1e-9, 2.5, math.nan]
    for labels in (("mnist", "http"), ("mnist", "grpc")):
        for value in values:
            for histogram in histograms:
                histogram.labels(*labels).observe(value)
        for counter in counters:
            counter.labels(model=labels[0], protocol=labels[1]).inc()
            counter.labels(*labels).inc(2)
        for gauge in gauges:
            gauge.labels(*labels).inc()
            gauge.labels(*labels).inc()
            gauge.labels(*labels).dec()
        values = values[:4]
    batch_sizes = (
        LoopHistogram("t_rows", "Rows.", ("version",), ours, BATCH_BUCKETS),
        Histogram("t_rows", "Rows.", ("version",), registry=theirs, buckets=BATCH_BUCKETS),
    )
    for rows in (1, 3, 32, 33, 300):
        for histogram in batch_sizes:
            histogram.labels(1).observe(rows)  # a label value that is not text yet
    assert exposition(ours) == exposition(theirs)
    assert (
        ours.get_sample_value("t_seconds_bucket", {"model": "mnist", "protocol": "http", "le": "0.0001"}) == 3
    )
    assert ours.get_sample_value("t_requests_total", {"model": "mnist", "protocol": "grpc"}) == 3


def test_wrong_labels_and_a_falling_counter_are_refused() -> None:
    counter = LoopCounter("t_requests", "Requests.", LABELS, CollectorRegistry())
    with pytest.raises(ValueError, match="labels are model, protocol"):
        counter.labels("mnist")
    with pytest.raises(ValueError, match="labels are model, protocol"):
        counter.labels(model="mnist", status="ok")
    with pytest.raises(ValueError, match="only goes up"):
        counter.labels("mnist", "http").inc(-1)


def test_a_name_taken_twice_in_one_registry_is_refused_as_prometheus_client_refuses_it() -> None:
    registry = CollectorRegistry()
    Histogram("t_seconds", "Latency.", LABELS, registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        LoopHistogram("t_seconds", "Latency.", LABELS, registry, LATENCY_BUCKETS)

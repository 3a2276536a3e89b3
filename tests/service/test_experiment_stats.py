"""The verdict's statistics against statsmodels, and the experiments file parser."""

from __future__ import annotations

from pathlib import Path

import pytest
from statsmodels.stats import proportion as reference_stats

from service.routing.experiments import ExperimentsFileError, load_experiments, parse_experiments
from service.routing.feedback import Prediction, PredictionStore
from service.routing.router import pick, sticky_bucket
from service.routing.stats import non_inferiority_p_value, verdict, wilson_interval

CASES = [
    (970, 1000, 980, 1000),
    (95, 100, 97, 100),
    (480, 500, 490, 500),
    (300, 400, 350, 400),
    (9, 10, 10, 10),
]


@pytest.mark.parametrize(("k", "n"), [(0, 10), (7, 10), (970, 1000), (1000, 1000), (1, 3)])
def test_wilson_interval_matches_statsmodels(k: int, n: int) -> None:
    low, high = reference_stats.proportion_confint(k, n, alpha=0.05, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-12)


@pytest.mark.parametrize(("k_v", "n_v", "k_r", "n_r"), CASES)
@pytest.mark.parametrize("margin", [0.0, 0.01, 0.05])
def test_non_inferiority_p_value_matches_statsmodels(
    k_v: int, n_v: int, k_r: int, n_r: int, margin: float
) -> None:
    reference = reference_stats.test_proportions_2indep(
        k_v, n_v, k_r, n_r, value=-margin, method="wald", compare="diff", alternative="larger"
    )
    assert non_inferiority_p_value(k_v, n_v, k_r, n_r, margin) == pytest.approx(reference.pvalue, abs=1e-9)


def test_verdicts() -> None:
    assert verdict(970, 1000, 975, 1000, margin=0.02, min_samples=100).verdict == "non-inferior"
    assert verdict(900, 1000, 980, 1000, margin=0.01, min_samples=100).verdict == "inferior"
    assert verdict(96, 100, 98, 100, margin=0.01, min_samples=100).verdict == "not enough data"
    too_few = verdict(50, 50, 50, 50, margin=0.01, min_samples=100)
    assert (too_few.verdict, too_few.p_value) == ("not enough data", None)


def test_sticky_buckets_are_stable_and_spread() -> None:
    assert sticky_bucket("salt", "user-1") == sticky_bucket("salt", "user-1")
    assert sticky_bucket("salt", "user-1") != sticky_bucket("other", "user-1")
    buckets = [sticky_bucket("salt", f"user-{i}") for i in range(2000)]
    assert all(0 <= b < 100 for b in buckets)
    assert 0.45 < sum(b < 50 for b in buckets) / len(buckets) < 0.55


GOOD = """\
experiments:
  - name: mnist-compression
    family: mnist
    variants:
      - {name: teacher-fp32, weight: 20}
      - {name: student-int8-x86, weight: 80}
    sticky_key: x-user-id
    shadow: {variant: teacher-fp32, percent: 50}
    margin: 0.01
"""


def test_a_valid_file_and_the_split_it_defines() -> None:
    experiment = parse_experiments(GOOD, "experiments.yaml").experiments[0]
    assert [pick(experiment, point) for point in (0, 19.99, 20, 99.99)] == [
        "teacher-fp32", "teacher-fp32", "student-int8-x86", "student-int8-x86"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("weight: 80", "weight: 70"), "experiments.yaml:2: experiments.0: Value error, variant weights must sum to 100, they sum to 90"),
        (GOOD.replace("margin: 0.01", "margin: 1.5"), "experiments.yaml:9: experiments.0.margin: Input should be less than 1"),
        (GOOD.replace("percent: 50", "percent: 150"), "experiments.yaml:8: experiments.0.shadow.percent"),
        (GOOD.replace("weight: 20", "weight: twenty"), "experiments.yaml:5: experiments.0.variants.0.weight"),
        (GOOD.replace("sticky_key", "stikcy_key"), "experiments.yaml:7: experiments.0.stikcy_key: Extra inputs are not permitted"),
        (GOOD + GOOD.replace("experiments:\n", ""), "more than one experiment with name"),
        ("experiments: [\n", "experiments.yaml:2: not valid YAML"),
    ],
)  # fmt: skip
def test_invalid_files_are_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(ExperimentsFileError) as refused:
        parse_experiments(text, "experiments.yaml")
    assert message in str(refused.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ExperimentsFileError, match="cannot read"):
        load_experiments(tmp_path / "nope.yaml")


def test_prediction_store_expires_and_evicts() -> None:
    now = [0.0]
    store = PredictionStore(capacity=2, ttl_s=10, clock=lambda: now[0])
    for name in ("a", "b", "c"):
        store.put(name, Prediction(None, "mnist", "teacher-fp32", (1,), created=now[0]))
    assert (len(store), store.evicted) == (2, 1)
    assert store.take("a") == ("unknown id", None)
    now[0] = 11.0
    assert store.take("b") == ("expired", None)
    store.put("d", Prediction(None, "mnist", "teacher-fp32", (3,), created=now[0]))
    status, prediction = store.take("d")
    assert status == "ok" and prediction is not None and prediction.classes == (3,)
    assert store.take("d") == ("unknown id", None)

"""The uplift intervals (engine/campaigns/stats.py) against statsmodels on
random data: Newcombe's hybrid score interval for a difference of
proportions, Welch's t interval for a difference of means, and the t
quantile they rest on."""

from __future__ import annotations

import random

import pytest

from engine.campaigns.stats import newcombe_diff, t_quantile, welch_diff

from .support import statsmodels_modules


@pytest.mark.parametrize("seed", range(40))
def test_conversion_interval_matches_statsmodels_newcombe(seed: int) -> None:
    proportion, _ = statsmodels_modules()
    rng = random.Random(seed)
    n1, n2 = rng.randint(1, 5000), rng.randint(1, 5000)
    c1, c2 = rng.randint(0, n1), rng.randint(0, n2)
    got = newcombe_diff(c1, n1, c2, n2)
    low, high = proportion.confint_proportions_2indep(c1, n1, c2, n2, method="newcomb", compare="diff")
    assert got is not None
    assert got.estimate == pytest.approx(c1 / n1 - c2 / n2, abs=1e-12)
    assert (got.low, got.high) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))


@pytest.mark.parametrize("seed", range(40))
def test_revenue_interval_matches_statsmodels_welch(seed: int) -> None:
    _, weightstats = statsmodels_modules()
    rng = random.Random(seed)
    a = [rng.choice([0.0, 0.0, round(rng.uniform(10, 500), 2)]) for _ in range(rng.randint(2, 400))]
    b = [rng.choice([0.0, 0.0, 0.0, round(rng.uniform(10, 300), 2)]) for _ in range(rng.randint(2, 400))]
    got = welch_diff(len(a), sum(a), sum(x * x for x in a), len(b), sum(b), sum(x * x for x in b))
    low, high = weightstats.CompareMeans(weightstats.DescrStatsW(a), weightstats.DescrStatsW(b)).tconfint_diff(
        usevar="unequal")
    assert got is not None
    assert (got.low, got.high) == (pytest.approx(low, rel=1e-7, abs=1e-7), pytest.approx(high, rel=1e-7, abs=1e-7))


@pytest.mark.parametrize("df", [1, 2, 3.5, 7, 30, 123.4, 10_000])
def test_t_quantile_matches_scipy(df: float) -> None:
    statsmodels_modules()  # scipy comes with statsmodels
    from scipy import stats

    assert t_quantile(0.975, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-9)


def test_empty_groups_have_no_interval() -> None:
    assert newcombe_diff(0, 0, 1, 2) is None
    assert welch_diff(1, 5.0, 25.0, 10, 1.0, 1.0) is None

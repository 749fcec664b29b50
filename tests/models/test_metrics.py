"""Tests of the ranking metrics: hand-computed cases and scikit-learn as the reference."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, ndcg_score, roc_auc_score

from models.metrics import (
    MetricTally,
    average_precision,
    hit_rate,
    metric_key,
    ndcg,
    reciprocal_rank,
    sampled_auc,
)

RANKED = ["a", "b", "c", "d", "e"]


# --- hand-computed cases ---


def test_hit_rate_at_cutoff():
    assert hit_rate(RANKED, {"c"}, 3) == 1.0
    assert hit_rate(RANKED, {"c"}, 2) == 0.0
    assert hit_rate(RANKED, {"z"}, 5) == 0.0
    assert hit_rate([], {"a"}, 5) == 0.0


def test_ndcg_single_relevant_item():
    assert ndcg(RANKED, {"a"}, 5) == 1.0
    assert ndcg(RANKED, {"c"}, 5) == pytest.approx(0.5)  # 1 / log2(3 + 1)
    assert ndcg(RANKED, {"e"}, 4) == 0.0


def test_ndcg_two_relevant_items():
    # DCG = 1/log2(3) + 1/log2(5); ideal = 1 + 1/log2(3).
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg(RANKED, {"b", "d"}, 5) == pytest.approx(expected)


def test_ndcg_ideal_is_capped_at_k():
    assert ndcg(RANKED, {"a", "b", "x", "y"}, 2) == pytest.approx(1.0)


def test_reciprocal_rank_first_relevant():
    assert reciprocal_rank(RANKED, {"d", "b"}, 5) == 0.5
    assert reciprocal_rank(RANKED, {"d"}, 3) == 0.0


def test_average_precision_hand_case():
    # Relevant at ranks 1 and 3: (1/1 + 2/3) / 2.
    assert average_precision(["a", "x", "b", "y"], {"a", "b"}, 4) == pytest.approx((1 + 2 / 3) / 2)
    # A relevant item beyond k counts in the denominator only up to k.
    assert average_precision(["x", "a", "b"], {"a", "b", "c"}, 2) == pytest.approx((1 / 2) / 2)


def test_average_precision_counts_repeats_once():
    assert average_precision(["a", "a", "b"], {"a", "b"}, 3) == pytest.approx((1 + 2 / 3) / 2)


def test_map_equals_mrr_with_one_relevant_item():
    rng = random.Random(3)
    for _ in range(200):
        ranked = rng.sample(range(30), 20)
        ranked = [str(item) for item in ranked]
        relevant = {str(rng.randrange(30))}
        k = rng.choice([1, 5, 10, 20])
        assert average_precision(ranked, relevant, k) == pytest.approx(reciprocal_rank(ranked, relevant, k))


def test_empty_relevant_set_scores_zero():
    assert ndcg(RANKED, set(), 5) == 0.0
    assert average_precision(RANKED, set(), 5) == 0.0


@pytest.mark.parametrize("k", [0, -1, 2.0, True])
def test_metrics_reject_invalid_k(k):
    with pytest.raises(ValueError, match="invalid cut-off k"):
        hit_rate(RANKED, {"a"}, k)
    with pytest.raises(ValueError, match="invalid cut-off k"):
        MetricTally((10, k))


def test_sampled_auc_hand_case():
    assert sampled_auc(1.0, [0.0, 0.5]) == 1.0
    assert sampled_auc(0.0, [0.5, 1.0]) == 0.0
    assert sampled_auc(0.5, [0.5, 0.5, 0.0, 1.0]) == pytest.approx(0.5)
    assert sampled_auc(-math.inf, [0.0]) == 0.0


def test_sampled_auc_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one negative"):
        sampled_auc(1.0, [])
    with pytest.raises(ValueError, match="NaN"):
        sampled_auc(float("nan"), [1.0])


# --- scikit-learn as the reference ---


def _scores_from_ranking(ranked: list[str], catalogue: list[str]) -> np.ndarray:
    """Give listed items descending scores and every other item a lower, equal score."""
    position = {item: rank for rank, item in enumerate(ranked)}
    return np.array([len(ranked) - position[item] if item in position else 0.0 for item in catalogue])


@pytest.mark.parametrize("seed", range(5))
def test_ndcg_matches_sklearn(seed):
    rng = random.Random(seed)
    catalogue = [f"i{n}" for n in range(40)]
    for _ in range(50):
        ranked = rng.sample(catalogue, 20)
        relevant = set(rng.sample(catalogue, rng.randint(1, 4)))
        k = rng.choice([1, 3, 5, 10, 20])
        y_true = np.array([[1.0 if item in relevant else 0.0 for item in catalogue]])
        y_score = _scores_from_ranking(ranked, catalogue)[None, :]
        assert ndcg(ranked, relevant, k) == pytest.approx(ndcg_score(y_true, y_score, k=k))


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_sklearn(seed):
    # sklearn ranks the whole catalogue, so the list covers it and k is its length.
    rng = random.Random(seed)
    catalogue = [f"i{n}" for n in range(30)]
    for _ in range(50):
        ranked = rng.sample(catalogue, len(catalogue))
        relevant = set(rng.sample(catalogue, rng.randint(1, 6)))
        y_true = np.array([1 if item in relevant else 0 for item in catalogue])
        y_score = _scores_from_ranking(ranked, catalogue)
        expected = average_precision_score(y_true, y_score)
        assert average_precision(ranked, relevant, len(ranked)) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(5))
def test_sampled_auc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        # Rounded scores make ties, which both count as one half.
        negatives = np.round(rng.normal(size=rng.integers(1, 60)), 1)
        positive = float(np.round(rng.normal(), 1))
        y_true = np.r_[1, np.zeros(len(negatives))]
        expected = roc_auc_score(y_true, np.r_[positive, negatives])
        assert sampled_auc(positive, negatives.tolist()) == pytest.approx(expected)


# --- MetricTally ---


def test_tally_matches_metric_functions():
    rng = random.Random(11)
    catalogue = [f"i{n}" for n in range(50)]
    tally = MetricTally((5, 20))
    expected = {metric_key(name, k): 0.0 for k in (5, 20) for name in ("HR", "NDCG", "MRR", "MAP")}
    for _ in range(300):
        ranked = rng.sample(catalogue, rng.randint(0, 20))
        target = rng.choice(catalogue)
        tally.add(ranked, target)
        for k in (5, 20):
            expected[metric_key("HR", k)] += hit_rate(ranked, {target}, k)
            expected[metric_key("NDCG", k)] += ndcg(ranked, {target}, k)
            expected[metric_key("MRR", k)] += reciprocal_rank(ranked, {target}, k)
            expected[metric_key("MAP", k)] += average_precision(ranked, {target}, k)
    means = tally.means()
    assert tally.n_events == 300
    for key, total in expected.items():
        assert means[key] == pytest.approx(total / 300), key


def test_tally_ignores_target_beyond_largest_k():
    tally = MetricTally((2,))
    tally.add(["a", "b", "c"], "c")
    assert tally.means()["HR@2"] == 0.0
    assert tally.n_events == 1


def test_tally_means_are_none_when_empty():
    means = MetricTally((10,)).means()
    assert means["HR@10"] is None
    assert means["AUC"] is None


def test_tally_auc_has_its_own_count():
    tally = MetricTally((10,))
    tally.add(["a"], "a")
    tally.add(["a"], "b")
    tally.add_auc(0.25)
    assert tally.n_auc == 1
    assert tally.means()["AUC"] == 0.25
    assert tally.means()["HR@10"] == 0.5

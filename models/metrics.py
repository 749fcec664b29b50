"""Ranking metrics at a cut-off K, and a tally that averages them over events.

A recommendation is a list of item ids, best first. Relevance is binary: an
item is relevant when it is in the set ``relevant``. Ranks are 1-based.

With one relevant item per event, as in next-item evaluation, AP@K is
``1 / rank`` when the item is in the top K and 0 otherwise, so MAP@K equals
MRR@K. :func:`average_precision` still handles any number of relevant items.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

__all__ = [
    "METRIC_NAMES",
    "MetricTally",
    "average_precision",
    "hit_rate",
    "metric_key",
    "ndcg",
    "reciprocal_rank",
    "sampled_auc",
]

METRIC_NAMES = ("HR", "NDCG", "MRR", "MAP")
AUC_KEY = "AUC"


def metric_key(name: str, k: int) -> str:
    """Return the report key of a metric at K.

    >>> metric_key("NDCG", 10)
    'NDCG@10'
    """
    return f"{name}@{k}"


def hit_rate(ranked: Sequence[str], relevant: AbstractSet[str], k: int) -> float:
    """Return 1.0 when a relevant item is in the top ``k``, else 0.0.

    >>> hit_rate(["a", "b", "c"], {"c"}, 2), hit_rate(["a", "b", "c"], {"c"}, 3)
    (0.0, 1.0)
    """
    _check_k(k)
    return 1.0 if any(item in relevant for item in ranked[:k]) else 0.0


def ndcg(ranked: Sequence[str], relevant: AbstractSet[str], k: int) -> float:
    """Return the normalized discounted cumulative gain at ``k`` with binary gains.

    DCG sums ``1 / log2(rank + 1)`` over relevant items in the top ``k``. The
    ideal DCG places ``min(len(relevant), k)`` relevant items first. Returns
    0.0 when ``relevant`` is empty.

    >>> round(ndcg(["a", "b", "c"], {"b"}, 10), 4)
    0.6309
    """
    _check_k(k)
    dcg = sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(ranked[:k], start=1) if item in relevant)
    n_ideal = min(len(relevant), k)
    if n_ideal == 0:
        return 0.0
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, n_ideal + 1))
    return dcg / ideal


def reciprocal_rank(ranked: Sequence[str], relevant: AbstractSet[str], k: int) -> float:
    """Return ``1 / rank`` of the first relevant item in the top ``k``, else 0.0.

    >>> reciprocal_rank(["a", "b", "c"], {"b", "c"}, 10)
    0.5
    """
    _check_k(k)
    for rank, item in enumerate(ranked[:k], start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def average_precision(ranked: Sequence[str], relevant: AbstractSet[str], k: int) -> float:
    """Return the average precision at ``k``.

    Sums precision@i over the ranks i <= k that hold a relevant item and
    divides by ``min(len(relevant), k)``, so a list that puts every relevant
    item it can first scores 1.0. Returns 0.0 when ``relevant`` is empty.
    Repeated items in ``ranked`` count once, at their first rank.

    >>> round(average_precision(["a", "x", "b"], {"a", "b"}, 10), 4)
    0.8333
    """
    _check_k(k)
    n_ideal = min(len(relevant), k)
    if n_ideal == 0:
        return 0.0
    found: set[str] = set()
    total = 0.0
    for rank, item in enumerate(ranked[:k], start=1):
        if item in relevant and item not in found:
            found.add(item)
            total += len(found) / rank
    return total / n_ideal


def sampled_auc(positive_score: float, negative_scores: Iterable[float]) -> float:
    """Return the ROC-AUC of one positive against sampled negatives.

    This is the fraction of negatives scored below the positive, with ties
    counted as one half. Raises ``ValueError`` when there is no negative or a
    score is NaN.

    >>> sampled_auc(0.5, [0.1, 0.5, 0.9, 0.2])
    0.625
    """
    negatives = list(negative_scores)
    if not negatives:
        raise ValueError("sampled_auc needs at least one negative score, got none")
    if math.isnan(positive_score) or any(math.isnan(score) for score in negatives):
        raise ValueError("sampled_auc got a NaN score; expected numbers or +-inf")
    n_below = sum(1 for score in negatives if score < positive_score)
    n_tied = sum(1 for score in negatives if score == positive_score)
    return (n_below + 0.5 * n_tied) / len(negatives)


@dataclass
class MetricTally:
    """Sums of per-event metrics at each K, and their means.

    :meth:`add` takes one event with a single relevant item, the next-item
    case. ``n_events`` counts the lists added. The AUC has its own count,
    ``n_auc``, because it is computed only on a sample of events.
    """

    k_values: tuple[int, ...]
    n_events: int = 0
    n_auc: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    auc_sum: float = 0.0

    def __post_init__(self) -> None:
        if not self.k_values:
            raise ValueError("MetricTally needs at least one K, got an empty k_values")
        for k in self.k_values:
            _check_k(k)
        for k in self.k_values:
            for name in METRIC_NAMES:
                self.sums.setdefault(metric_key(name, k), 0.0)

    def add(self, ranked: Sequence[str], target: str) -> None:
        """Add the metrics of one list whose only relevant item is ``target``.

        Equal to calling each metric function with ``{target}``, but finds the
        target's rank once for every K.
        """
        self.n_events += 1
        try:
            rank = ranked.index(target, 0, max(self.k_values)) + 1
        except ValueError:
            return
        for k in self.k_values:
            if rank <= k:
                self.sums[metric_key("HR", k)] += 1.0
                self.sums[metric_key("NDCG", k)] += 1.0 / math.log2(rank + 1)
                self.sums[metric_key("MRR", k)] += 1.0 / rank
                self.sums[metric_key("MAP", k)] += 1.0 / rank

    def add_auc(self, auc: float) -> None:
        self.n_auc += 1
        self.auc_sum += auc

    def means(self) -> dict[str, float | None]:
        """Return each metric's mean over the events added; None where nothing was added."""
        out: dict[str, float | None] = {
            key: (total / self.n_events if self.n_events else None) for key, total in self.sums.items()
        }
        out[AUC_KEY] = self.auc_sum / self.n_auc if self.n_auc else None
        return out

    def to_dict(self) -> dict[str, object]:
        return {"n_events": self.n_events, "n_auc": self.n_auc, "metrics": self.means()}


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"invalid cut-off k {k!r}: expected an integer >= 1")

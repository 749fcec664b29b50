"""The contract of every model compared by the prequential evaluation.

A model is asked for a recommendation for a user, from the state it has
learned up to the previous event, and then learns the event itself:

1. ``recommend(user_id, k, exclude)`` returns at most ``k`` item ids, best
   first, without any item of ``exclude``. It only reads state: it never learns.
2. ``learn(event)`` updates the model with one event after that event was scored.

``train_seconds`` accumulates the wall time spent learning, so that the
compute of each model can be compared. :class:`BaseModel` keeps it.

Optional methods, which the evaluation harness looks up on the model:

- ``score(user_id, items)`` returns one score per item (higher is more
  relevant), for the sampled ROC-AUC;
- ``recommend_lists(user_id, k, excludes)`` returns one list per exclusion
  set, equal to calling ``recommend`` once per set but allowed to score once;
- ``end_warmup()`` is called once, after the last warm-up event was learned;
- ``describe()`` returns the model's settings for the report.
"""

from __future__ import annotations

import abc
import heapq
import time
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Protocol, runtime_checkable

from state.vocabulary import Popularity
from streams.events import Event

__all__ = ["BaseModel", "CandidateModel", "Model", "ScoringModel", "top_items"]


@runtime_checkable
class Model(Protocol):
    """The interface of a compared model, as the evaluation harness calls it."""

    name: str
    train_seconds: float

    def recommend(self, user_id: str, k: int, exclude: AbstractSet[str]) -> list[str]: ...

    def learn(self, event: Event) -> None: ...


@runtime_checkable
class ScoringModel(Protocol):
    """A model that can also score given items for a user, for the sampled ROC-AUC."""

    def score(self, user_id: str, items: Sequence[str]) -> list[float]: ...


class BaseModel(abc.ABC):
    """Keep ``train_seconds`` and supply the optional methods' defaults.

    Subclasses implement :meth:`recommend` and :meth:`_learn`, and
    :meth:`_end_warmup` when they train on the warm-up part as a batch. Time in
    ``_learn`` and ``_end_warmup`` counts as training.
    """

    name = "model"

    def __init__(self) -> None:
        self.train_seconds = 0.0

    @abc.abstractmethod
    def recommend(self, user_id: str, k: int, exclude: AbstractSet[str]) -> list[str]:
        """Return at most ``k`` item ids for ``user_id``, best first, none of them in ``exclude``."""

    def recommend_lists(self, user_id: str, k: int, excludes: Sequence[AbstractSet[str]]) -> list[list[str]]:
        """Return one recommendation per exclusion set, by calling :meth:`recommend` for each."""
        return [self.recommend(user_id, k, exclude) for exclude in excludes]

    def learn(self, event: Event) -> None:
        """Update the model with ``event`` and add the time taken to ``train_seconds``."""
        start = time.perf_counter()
        self._learn(event)
        self.train_seconds += time.perf_counter() - start

    def end_warmup(self) -> None:
        """Run the model's end-of-warm-up training, if any, and count its time."""
        start = time.perf_counter()
        self._end_warmup()
        self.train_seconds += time.perf_counter() - start

    def describe(self) -> dict[str, Any]:
        """Return the model's settings, as JSON-ready values, for the report."""
        return {}

    @abc.abstractmethod
    def _learn(self, event: Event) -> None:
        """Update the model with one event."""

    def _end_warmup(self) -> None:
        return None


class CandidateModel(BaseModel):
    """A model that scores candidate items once per request and fills gaps with popular-now items.

    Subclasses implement :meth:`candidate_scores`. Each list keeps the best
    candidates that are not excluded and, when fewer than ``k`` remain, ends
    with the most popular items now (time-decayed counts kept in
    ``self.popularity``) that are neither excluded nor already listed. The
    subclass must update ``self.popularity`` in ``_learn``.
    """

    def __init__(self, popularity_half_life_s: float) -> None:
        super().__init__()
        self.popularity = Popularity(popularity_half_life_s)

    @abc.abstractmethod
    def candidate_scores(self, user_id: str) -> Mapping[str, float]:
        """Return the scored candidates for ``user_id``; higher is more relevant."""

    def score(self, user_id: str, items: Sequence[str]) -> list[float]:
        """Return each item's candidate score for the user, 0.0 for items that are not candidates."""
        scores = self.candidate_scores(user_id)
        return [scores.get(item, 0.0) for item in items]

    def recommend(self, user_id: str, k: int, exclude: AbstractSet[str]) -> list[str]:
        return self.recommend_lists(user_id, k, [exclude])[0]

    def recommend_lists(self, user_id: str, k: int, excludes: Sequence[AbstractSet[str]]) -> list[list[str]]:
        scores = self.candidate_scores(user_id)
        lists = []
        for exclude in excludes:
            items = top_items(scores, k, exclude)
            if len(items) < k:
                listed = set(items)
                fill = self.popularity.top(k - len(items), exclude=listed | set(exclude))
                items.extend(item for item, _ in fill)
            lists.append(items)
        return lists


def top_items(scores: Mapping[str, float], k: int, exclude: AbstractSet[str]) -> list[str]:
    """Return the ``k`` best-scored items not in ``exclude``, best first.

    Ties keep the mapping's order, because ``heapq.nlargest`` is stable.

    >>> top_items({"a": 1.0, "b": 3.0, "c": 2.0}, 2, {"b"})
    ['c', 'a']
    """
    if len(exclude) == 0:
        return heapq.nlargest(k, scores, key=scores.__getitem__)
    kept = (item for item in scores if item not in exclude)
    return heapq.nlargest(k, kept, key=scores.__getitem__)

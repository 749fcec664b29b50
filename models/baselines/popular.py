"""Popularity baselines: the same list for every user.

:class:`MostPopular` ranks items by their event count since the stream
started. :class:`PopularNow` ranks them by time-decayed, type-weighted counts
(:class:`state.vocabulary.Popularity`, the ranker's own fallback), so that
items popular lately rise first.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from models.baselines.base import BaseModel
from state.vocabulary import EVENT_TYPE_WEIGHTS, Popularity
from streams.events import Event

__all__ = ["MostPopular", "PopularNow"]

# The ranker's default popularity half-life, from models.recommender.RecommenderConfig.
DEFAULT_HALF_LIFE_S = 6 * 3600.0
# How many events may change counts before PopularNow recomputes its top list.
DEFAULT_TOP_CACHE_UPDATES = 100


class MostPopular(BaseModel):
    """Recommend the items with the most events so far, every event counting one.

    Counts are exact at every request. Items are kept in buckets by count, so
    an event moves one item up one bucket and a request walks the buckets from
    the highest count down. Among items with equal counts, the one that
    reached the count first ranks first.

    >>> from streams.events import Event
    >>> model = MostPopular()
    >>> for n, item in enumerate(["a", "b", "b", "c"]):
    ...     model.learn(Event(f"e{n}", "u1", item, "view", float(n)))
    >>> model.recommend("u2", 2, set()), model.recommend("u2", 2, {"b"})
    (['b', 'a'], ['a', 'c'])
    """

    name = "popular"

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        # _buckets[c] contains the items with count c, in the order they reached it.
        self._buckets: dict[int, dict[str, None]] = {}
        self._max_count = 0

    def recommend(self, user_id: str, k: int, exclude: AbstractSet[str]) -> list[str]:
        out: list[str] = []
        for count in range(self._max_count, 0, -1):
            for item in self._buckets.get(count, ()):
                if item not in exclude:
                    out.append(item)
                    if len(out) == k:
                        return out
        return out

    def score(self, user_id: str, items: Sequence[str]) -> list[float]:
        """Return each item's event count."""
        return [float(self.counts.get(item, 0)) for item in items]

    def _learn(self, event: Event) -> None:
        item = event.item_id
        count = self.counts.get(item, 0)
        if count:
            bucket = self._buckets[count]
            del bucket[item]
            if not bucket:
                del self._buckets[count]
        self.counts[item] = count + 1
        self._buckets.setdefault(count + 1, {})[item] = None
        self._max_count = max(self._max_count, count + 1)


class PopularNow(BaseModel):
    """Recommend the items with the highest time-decayed popularity now.

    Each event adds its type's weight (``state.vocabulary.EVENT_TYPE_WEIGHTS``),
    which halves every ``half_life_s`` seconds of event time. The top list is
    recomputed after every ``top_cache_updates`` events, so it can lag that
    many events behind the counts.
    """

    name = "popular-now"

    def __init__(
        self, half_life_s: float = DEFAULT_HALF_LIFE_S, top_cache_updates: int = DEFAULT_TOP_CACHE_UPDATES
    ) -> None:
        super().__init__()
        self.popularity = Popularity(half_life_s, top_cache_updates=top_cache_updates)

    def recommend(self, user_id: str, k: int, exclude: AbstractSet[str]) -> list[str]:
        return [item for item, _ in self.popularity.top(k, exclude=exclude)]

    def score(self, user_id: str, items: Sequence[str]) -> list[float]:
        """Return each item's decayed popularity at the latest event time."""
        return [self.popularity.score(item) for item in items]

    def describe(self) -> dict[str, Any]:
        return {"half_life_s": self.popularity.half_life_s}

    def _learn(self, event: Event) -> None:
        self.popularity.update(event.item_id, event.ts, EVENT_TYPE_WEIGHTS[event.type])

"""The item vocabulary (item id to embedding row) and time-decayed popularity.

Row 0 is padding and never maps to an item. Rows are handed out in order of
first appearance and never reused, so the mapping is collisionless and a
model trained on rows ``< n`` stays valid when the vocabulary grows.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable

__all__ = ["ItemVocabulary", "Popularity", "EVENT_TYPE_WEIGHTS"]

# How much one event adds to an item's popularity, by event type.
EVENT_TYPE_WEIGHTS = {"view": 1.0, "click": 1.0, "rating": 1.0, "add_to_cart": 2.0, "purchase": 3.0}


class ItemVocabulary:
    """Map item ids to embedding rows, growing as new items arrive.

    >>> vocab = ItemVocabulary()
    >>> vocab.add("i9"), vocab.add("i3"), vocab.add("i9")
    (1, 2, 1)
    >>> len(vocab), vocab.item_id(2)
    (3, 'i3')
    """

    def __init__(self, items: Iterable[str] = ()) -> None:
        self._items: list[str] = [""]
        self._rows: dict[str, int] = {}
        for item_id in items:
            if item_id:
                self.add(item_id)

    def __len__(self) -> int:
        """Number of rows, padding included: the valid rows are ``1 .. len - 1``."""
        return len(self._items)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._rows

    def add(self, item_id: str) -> int:
        """Return the row of ``item_id``, giving it the next free row if new."""
        row = self._rows.get(item_id)
        if row is None:
            if not item_id:
                raise ValueError("item_id must be a non-empty string, got ''")
            row = len(self._items)
            self._items.append(item_id)
            self._rows[item_id] = row
        return row

    def row(self, item_id: str) -> int | None:
        return self._rows.get(item_id)

    def item_id(self, row: int) -> str:
        if not 1 <= row < len(self._items):
            raise IndexError(f"row {row} is outside the vocabulary rows 1..{len(self._items) - 1}")
        return self._items[row]

    @property
    def items(self) -> list[str]:
        """Item ids in row order; ``items[0]`` is the padding entry ``""``."""
        return list(self._items)


class Popularity:
    """Item popularity with exponential time decay, in event time.

    An event of weight ``w`` at time ``t`` counts ``w * 2 ** ((t - now) / half_life_s)``
    at time ``now``: its weight halves every ``half_life_s`` seconds. Counts are
    kept relative to a reference time and rescaled when that grows large, so
    no per-item work is needed when time advances.

    >>> pop = Popularity(half_life_s=10.0)
    >>> pop.update("a", 0.0); pop.update("b", 10.0); pop.update("b", 10.0)
    >>> [item for item, _ in pop.top(2)]
    ['b', 'a']
    >>> round(pop.score("a"), 3)
    0.5
    """

    def __init__(self, half_life_s: float = 6 * 3600.0, top_cache_updates: int = 500) -> None:
        if not half_life_s > 0:
            raise ValueError(f"half_life_s must be positive, got {half_life_s}")
        self.half_life_s = half_life_s
        self._scaled: dict[str, float] = {}
        self._ref_ts: float | None = None
        self._now_ts = -math.inf
        self._top_cache: list[tuple[str, float]] = []
        self._top_cache_size = 0
        self._updates_since_top = 0
        self._top_cache_updates = top_cache_updates

    def __len__(self) -> int:
        return len(self._scaled)

    def update(self, item_id: str, ts: float, weight: float = 1.0) -> None:
        if self._ref_ts is None:
            self._ref_ts = ts
        self._now_ts = max(self._now_ts, ts)
        exponent = (ts - self._ref_ts) / self.half_life_s
        if exponent > 60:
            self._rebase(ts)
            exponent = 0.0
        self._scaled[item_id] = self._scaled.get(item_id, 0.0) + weight * 2.0**exponent
        self._updates_since_top += 1

    @property
    def latest_ts(self) -> float | None:
        """The latest event time seen, or None before the first update."""
        return None if self._ref_ts is None else self._now_ts

    def score(self, item_id: str) -> float:
        """Popularity of ``item_id`` as of the latest event time seen."""
        return self._scaled.get(item_id, 0.0) * self._decay_factor()

    def top(self, n: int, exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """Return the ``n`` most popular items now, best first, without ``exclude``.

        The ranking is cached and refreshed every ``top_cache_updates`` updates,
        because recomputing it costs a pass over every item.
        """
        excluded = set(exclude)
        want = n + len(excluded)
        if (self._updates_since_top >= self._top_cache_updates or want > self._top_cache_size
                or not self._top_cache):
            size = max(want, 4 * n, 100)
            self._top_cache = heapq.nlargest(size, self._scaled.items(), key=lambda kv: kv[1])
            self._top_cache_size = size
            self._updates_since_top = 0
        factor = self._decay_factor()
        out = [(item, scaled * factor) for item, scaled in self._top_cache if item not in excluded]
        return out[:n]

    def _decay_factor(self) -> float:
        if self._ref_ts is None:
            return 0.0
        return 2.0 ** ((self._ref_ts - self._now_ts) / self.half_life_s)

    def _rebase(self, ts: float) -> None:
        assert self._ref_ts is not None
        factor = 2.0 ** ((self._ref_ts - ts) / self.half_life_s)
        self._scaled = {item: value * factor for item, value in self._scaled.items() if value * factor > 1e-12}
        self._top_cache = [(item, value * factor) for item, value in self._top_cache]
        self._ref_ts = ts

"""What a running worker measures about itself: live prequential quality and a timeline.

Live quality follows the test-then-train protocol: when an event arrives, its
item is looked up in the last list published for that user, before the event
changes anything. HR@K is 1 when the item is in the top K, reciprocal rank is
``1 / rank``, and NDCG@K with one relevant item is ``1 / log2(rank + 1)``.
The last lists are kept in memory for the most recent users only, so the
first event of a user after a worker restart is not scored.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

__all__ = ["LiveQuality", "EventScore", "Timeline"]

MAX_USERS = 200_000
WINDOW_EVENTS = 1_000
MAX_TIMELINE_POINTS = 500


@dataclass(frozen=True)
class EventScore:
    """How the list published before an event ranked that event's item (rank is None for a miss)."""

    rank: int | None
    k: int

    @property
    def hit(self) -> float:
        return 1.0 if self.rank is not None and self.rank <= self.k else 0.0

    @property
    def reciprocal_rank(self) -> float:
        return 1.0 / self.rank if self.rank is not None and self.rank <= self.k else 0.0

    @property
    def ndcg(self) -> float:
        return 1.0 / math.log2(self.rank + 1) if self.rank is not None and self.rank <= self.k else 0.0


class LiveQuality:
    """Rolling HR@K, NDCG@K and MRR@K over the last ``window_events`` scored events.

    >>> quality = LiveQuality(k=10)
    >>> quality.remember("u1", ["a", "b", "c"], {"user_id": "u1"})
    >>> quality.score("u1", "b").rank, quality.score("u2", "a")
    (2, None)
    >>> quality.summary()["hr_at_10"]
    1.0
    """

    def __init__(self, k: int = 10, window_events: int = WINDOW_EVENTS, max_users: int = MAX_USERS) -> None:
        self.k = k
        self.max_users = max_users
        self._lists: OrderedDict[str, tuple[list[str], dict[str, Any]]] = OrderedDict()
        self._window: deque[EventScore] = deque(maxlen=window_events)
        self.n_scored = 0

    def score(self, user_id: str, item_id: str) -> EventScore | None:
        """Score ``item_id`` against the user's last list; None when the user has none."""
        entry = self._lists.get(user_id)
        if entry is None:
            return None
        items = entry[0]
        rank = items.index(item_id) + 1 if item_id in items else None
        result = EventScore(rank, self.k)
        self._window.append(result)
        self.n_scored += 1
        return result

    def remember(self, user_id: str, items: list[str], recommendation: dict[str, Any]) -> None:
        """Keep the list just published for ``user_id``, dropping the least recent user beyond ``max_users``."""
        self._lists[user_id] = (items, recommendation)
        self._lists.move_to_end(user_id)
        while len(self._lists) > self.max_users:
            self._lists.popitem(last=False)

    def recommendation(self, user_id: str) -> dict[str, Any] | None:
        entry = self._lists.get(user_id)
        return None if entry is None else entry[1]

    def summary(self) -> dict[str, Any]:
        """Means over the window; None values while nothing has been scored."""
        n = len(self._window)
        key = f"at_{self.k}"
        if n == 0:
            return {"window_events": 0, f"hr_{key}": None, f"ndcg_{key}": None, f"mrr_{key}": None}
        return {
            "window_events": n,
            f"hr_{key}": sum(s.hit for s in self._window) / n,
            f"ndcg_{key}": sum(s.ndcg for s in self._window) / n,
            f"mrr_{key}": sum(s.reciprocal_rank for s in self._window) / n,
        }


class Timeline:
    """Points of the worker's state over wall time, for the monitoring page."""

    def __init__(self, max_points: int = MAX_TIMELINE_POINTS) -> None:
        self._points: deque[dict[str, Any]] = deque(maxlen=max_points)
        self._last_count = 0
        self._last_wall: float | None = None

    def add(self, n_events: int, point: dict[str, Any], now: float | None = None) -> dict[str, Any]:
        """Append a point; ``events_per_s`` is computed from the event count since the previous one."""
        now = time.time() if now is None else now
        if self._last_wall is not None and now > self._last_wall:
            rate = (n_events - self._last_count) / (now - self._last_wall)
        else:
            rate = 0.0
        self._last_count, self._last_wall = n_events, now
        full = {"wall": now, "events_per_s": rate, **point}
        self._points.append(full)
        return full

    def points(self) -> list[dict[str, Any]]:
        return list(self._points)

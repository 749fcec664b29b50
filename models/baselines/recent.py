"""The user's own recent items, most recent first.

Many next events revisit an item the user has just seen, which makes this a
strong baseline when every event is scored. When the user's seen items are
excluded (the ``new_items`` protocol), every candidate is excluded and the
list is empty: the baseline cannot recommend anything new, by design.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from models.baselines.base import BaseModel
from streams.events import Event

__all__ = ["RecentItems"]

DEFAULT_MAX_ITEMS = 200


class RecentItems(BaseModel):
    """Recommend each user's last distinct items, most recent first; no fill.

    Keeps up to ``max_items`` distinct items per user. A repeated item moves
    to the front.

    >>> from streams.events import Event
    >>> model = RecentItems()
    >>> for n, item in enumerate(["a", "b", "a", "c"]):
    ...     model.learn(Event(f"e{n}", "u1", item, "view", float(n)))
    >>> model.recommend("u1", 10, set()), model.recommend("u1", 10, {"c"}), model.recommend("u2", 10, set())
    (['c', 'a', 'b'], ['a', 'b'], [])
    """

    name = "recent"

    def __init__(self, max_items: int = DEFAULT_MAX_ITEMS) -> None:
        super().__init__()
        if max_items < 1:
            raise ValueError(f"invalid max_items {max_items}: expected at least 1")
        self.max_items = max_items
        # Per user: item ids as dict keys, oldest first, so a move to the end is O(1).
        self._recent: dict[str, dict[str, None]] = {}

    def recommend(self, user_id: str, k: int, exclude: AbstractSet[str]) -> list[str]:
        out: list[str] = []
        for item in reversed(self._recent.get(user_id, {})):
            if item not in exclude:
                out.append(item)
                if len(out) == k:
                    break
        return out

    def score(self, user_id: str, items: Sequence[str]) -> list[float]:
        """Return ``1 / position`` in the user's recent items (1 = most recent), 0.0 for others."""
        recent = list(reversed(self._recent.get(user_id, {})))
        positions = {item: position for position, item in enumerate(recent, start=1)}
        return [1.0 / positions[item] if item in positions else 0.0 for item in items]

    def describe(self) -> dict[str, Any]:
        return {"max_items": self.max_items}

    def _learn(self, event: Event) -> None:
        recent = self._recent.setdefault(event.user_id, {})
        recent.pop(event.item_id, None)
        recent[event.item_id] = None
        if len(recent) > self.max_items:
            del recent[next(iter(recent))]

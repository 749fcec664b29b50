"""Item-to-item co-visitation: items that followed the user's recent items in other sequences.

Counts are learned online. When a user interacts with item ``j``, each of
their previous ``window`` items ``i`` adds ``1 / d`` to ``count(i -> j)``,
where ``d`` is how many steps back ``i`` is (1 for the item just before). The
counts are directed, because the next item is predicted from earlier ones.

A request scores every item that followed one of the user's last
``n_query_items`` distinct items, weighting the most recent of them most.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from models.baselines.base import CandidateModel
from models.baselines.popular import DEFAULT_HALF_LIFE_S
from state.vocabulary import EVENT_TYPE_WEIGHTS
from streams.events import Event

__all__ = ["CoVisitation"]

DEFAULT_WINDOW = 5
DEFAULT_QUERY_ITEMS = 3


class CoVisitation(CandidateModel):
    """Recommend items that often came right after the user's recent items.

    Query item number ``q`` (1 = most recent) weighs ``1 / q``. A user with no
    history, or whose items have no followers yet, gets popular-now items.

    >>> from streams.events import Event
    >>> model = CoVisitation()
    >>> for n, (user, item) in enumerate([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "c"), ("u2", "b")]):
    ...     model.learn(Event(f"e{n}", user, item, "view", float(n)))
    >>> model.counts
    {'a': {'b': 1.5, 'c': 1.0}, 'c': {'b': 1.0}}
    >>> model.candidate_scores("u1"), model.candidate_scores("u3")
    ({'b': 0.75, 'c': 0.5}, {})
    """

    name = "covisit"

    def __init__(
        self,
        window: int = DEFAULT_WINDOW,
        n_query_items: int = DEFAULT_QUERY_ITEMS,
        popularity_half_life_s: float = DEFAULT_HALF_LIFE_S,
    ) -> None:
        super().__init__(popularity_half_life_s)
        if window < 1:
            raise ValueError(f"invalid window {window}: expected at least 1 previous item")
        if n_query_items < 1:
            raise ValueError(f"invalid n_query_items {n_query_items}: expected at least 1")
        self.window = window
        self.n_query_items = n_query_items
        self.counts: dict[str, dict[str, float]] = {}
        self._recent: dict[str, deque[str]] = {}

    def candidate_scores(self, user_id: str) -> Mapping[str, float]:
        recent = self._recent.get(user_id)
        if not recent:
            return {}
        scores: dict[str, float] = {}
        for position, item in enumerate(self._query_items(recent), start=1):
            weight = 1.0 / position
            for follower, count in self.counts.get(item, {}).items():
                scores[follower] = scores.get(follower, 0.0) + weight * count
        return scores

    def describe(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "n_query_items": self.n_query_items,
            "popularity_half_life_s": self.popularity.half_life_s,
        }

    def _learn(self, event: Event) -> None:
        item = event.item_id
        recent = self._recent.setdefault(event.user_id, deque(maxlen=self.window))
        for steps_back, previous in enumerate(reversed(recent), start=1):
            if previous != item:
                followers = self.counts.setdefault(previous, {})
                followers[item] = followers.get(item, 0.0) + 1.0 / steps_back
        # A repeat of the last item adds no new order information.
        if not recent or recent[-1] != item:
            recent.append(item)
        self.popularity.update(item, event.ts, EVENT_TYPE_WEIGHTS[event.type])

    def _query_items(self, recent: deque[str]) -> list[str]:
        items: list[str] = []
        for item in reversed(recent):
            if item not in items:
                items.append(item)
                if len(items) == self.n_query_items:
                    break
        return items

"""Session-based k-nearest neighbours (V-SKNN): items of past sessions like the current one.

A session is a user's run of events with gaps shorter than ``session_gap_s``.
The current session of a user is their latest one. Neighbour sessions are
the past sessions, of any user, that share items with it, found through a
per-item list of the most recent ``max_sessions_per_item`` sessions that
contain the item. That cap is the sample of recent neighbours that keeps a
request cheap on popular items.

Similarity follows V-SKNN (Ludewig and Jannach, "Evaluation of Session-based
Recommendation Algorithms", 2018). The current session's last items are
weighted linearly by position, so the most recent counts 1 and the first 1/n.
Their weighted dot product with a neighbour's binary item vector is divided
by ``sqrt(n * m)`` for sessions of n and m distinct items. An item's score is
the summed similarity of the ``n_neighbours`` best neighbours that contain it.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from models.baselines.base import CandidateModel
from models.baselines.popular import DEFAULT_HALF_LIFE_S
from state.vocabulary import EVENT_TYPE_WEIGHTS
from streams.events import Event

__all__ = ["SessionKNN"]

DEFAULT_SESSION_GAP_S = 30 * 60.0
DEFAULT_NEIGHBOURS = 100
DEFAULT_SESSIONS_PER_ITEM = 200
# Distinct items kept per session; only the most recent ones query neighbours.
DEFAULT_SESSION_ITEMS = 50
DEFAULT_QUERY_ITEMS = 10


class SessionKNN(CandidateModel):
    """Recommend the items of the past sessions most similar to the user's current session.

    A user with no session, or one whose items no past session shares, gets
    popular-now items.
    """

    name = "sknn"

    def __init__(
        self,
        session_gap_s: float = DEFAULT_SESSION_GAP_S,
        n_neighbours: int = DEFAULT_NEIGHBOURS,
        max_sessions_per_item: int = DEFAULT_SESSIONS_PER_ITEM,
        max_session_items: int = DEFAULT_SESSION_ITEMS,
        n_query_items: int = DEFAULT_QUERY_ITEMS,
        popularity_half_life_s: float = DEFAULT_HALF_LIFE_S,
    ) -> None:
        super().__init__(popularity_half_life_s)
        if not session_gap_s > 0:
            raise ValueError(f"invalid session_gap_s {session_gap_s}: expected a positive number of seconds")
        for name, value in (("n_neighbours", n_neighbours), ("max_sessions_per_item", max_sessions_per_item),
                            ("max_session_items", max_session_items), ("n_query_items", n_query_items)):
            if value < 1:
                raise ValueError(f"invalid {name} {value}: expected at least 1")
        self.session_gap_s = session_gap_s
        self.n_neighbours = n_neighbours
        self.max_sessions_per_item = max_sessions_per_item
        self.max_session_items = max_session_items
        self.n_query_items = n_query_items
        # Session ids are ints handed out in order; items are dict keys, oldest first.
        self._sessions: dict[int, dict[str, None]] = {}
        self._item_sessions: dict[str, deque[int]] = {}
        self._user_session: dict[str, tuple[int, float]] = {}  # user -> (session id, last event ts)

    def candidate_scores(self, user_id: str) -> Mapping[str, float]:
        current = self._user_session.get(user_id)
        if current is None:
            return {}
        session_id = current[0]
        items = list(self._sessions[session_id])[-self.n_query_items:]
        neighbours = self._neighbours(session_id, items)
        scores: dict[str, float] = {}
        for similarity, neighbour_id in neighbours:
            for item in self._sessions.get(neighbour_id, ()):
                scores[item] = scores.get(item, 0.0) + similarity
        return scores

    def describe(self) -> dict[str, Any]:
        return {
            "session_gap_s": self.session_gap_s,
            "n_neighbours": self.n_neighbours,
            "max_sessions_per_item": self.max_sessions_per_item,
            "max_session_items": self.max_session_items,
            "n_query_items": self.n_query_items,
            "popularity_half_life_s": self.popularity.half_life_s,
        }

    def _learn(self, event: Event) -> None:
        """Add the event's item to the user's session, starting a new session after a long gap."""
        previous = self._user_session.get(event.user_id)
        if previous is None or event.ts - previous[1] >= self.session_gap_s:
            session_id = len(self._sessions)
        else:
            session_id = previous[0]
        self._user_session[event.user_id] = (session_id, event.ts)

        session = self._sessions.setdefault(session_id, {})
        if event.item_id in session:
            del session[event.item_id]
        else:
            sessions = self._item_sessions.setdefault(event.item_id, deque(maxlen=self.max_sessions_per_item))
            sessions.append(session_id)
        session[event.item_id] = None
        if len(session) > self.max_session_items:
            del session[next(iter(session))]
        self.popularity.update(event.item_id, event.ts, EVENT_TYPE_WEIGHTS[event.type])

    def _neighbours(self, session_id: int, items: list[str]) -> list[tuple[float, int]]:
        """Return up to ``n_neighbours`` (similarity, session id) pairs, most similar first.

        Equal similarities favour the more recent session, the one with the higher id.
        """
        dots: dict[int, float] = {}
        n_items = len(items)
        for position, item in enumerate(items, start=1):
            weight = position / n_items
            for neighbour_id in self._item_sessions.get(item, ()):
                if neighbour_id != session_id:
                    dots[neighbour_id] = dots.get(neighbour_id, 0.0) + weight
        current_size = len(self._sessions[session_id])
        similarities = (
            (dot / math.sqrt(current_size * len(self._sessions[neighbour_id])), neighbour_id)
            for neighbour_id, dot in dots.items()
        )
        return heapq.nlargest(self.n_neighbours, similarities)

"""Input drift: event-type mix, item popularity, and the rates of never-seen items and users."""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from river import drift

from models.drift.base import DriftAlarm, _check_int, _check_open_unit, _check_real, _update_adwin
from streams.events import EVENT_TYPES, Event

__all__ = ["InputDriftConfig", "InputDriftMonitor", "js_divergence"]

# Items named in the before/after summary of an item-popularity alarm.
SUMMARY_TOP_ITEMS = 5
# Name of the bucket that pools every item outside the compared top items.
OTHER_ITEMS = "__other__"


@dataclass(frozen=True)
class InputDriftConfig:
    """Windows and thresholds of an :class:`InputDriftMonitor`.

    The recent window is the last ``recent_events`` events and the reference
    window the ``reference_events`` events before it. Every
    ``check_every_events`` events, once both windows are full, the monitor
    compares them. The event-type mix alarms when the Jensen-Shannon
    divergence of the two type distributions exceeds ``event_type_threshold``
    bits. Item popularity alarms when the divergence of the item
    distributions exceeds ``item_popularity_threshold`` bits. Those item
    distributions keep the ``top_items`` most frequent items of each window
    and pool the rest into one bucket. ``new_rate_delta`` is the ADWIN
    significance level on the never-seen item and never-seen user indicators.

    With these windows, five stationary synthetic streams of 20,000 events
    (``SyntheticConfig`` defaults, seeds 1 to 5) reached at most 0.0032 bits
    for the event-type mix and 0.052 bits for item popularity. The thresholds
    are about 3 and 2 times those maxima. Sampling noise alone raises
    the divergence when the windows shrink or ``top_items`` grows. The
    thresholds are estimates, not tuned on production traffic.
    """

    reference_events: int = 5_000
    recent_events: int = 1_000
    check_every_events: int = 250
    top_items: int = 50
    event_type_threshold: float = 0.01
    item_popularity_threshold: float = 0.1
    new_rate_delta: float = 0.002

    def __post_init__(self) -> None:
        _check_int("InputDriftConfig", "reference_events", self.reference_events, minimum=1)
        _check_int("InputDriftConfig", "recent_events", self.recent_events, minimum=1)
        _check_int("InputDriftConfig", "check_every_events", self.check_every_events, minimum=1)
        _check_int("InputDriftConfig", "top_items", self.top_items, minimum=1)
        for name in ("event_type_threshold", "item_popularity_threshold"):
            value = getattr(self, name)
            _check_real("InputDriftConfig", name, value, minimum=0.0, exclusive=True)
            if value > 1.0:
                raise ValueError(
                    f"invalid InputDriftConfig.{name} {value!r}: expected at most 1, "
                    "the largest Jensen-Shannon divergence in bits"
                )
        _check_open_unit("InputDriftConfig", "new_rate_delta", self.new_rate_delta)


class InputDriftMonitor:
    """Shifts in the event-type mix, item popularity and the rate of never-seen items and users.

    Steps of :meth:`update`, in this order:

    1. mark the event's user and item as never seen or seen, then remember
       them, and feed both indicators to their ADWIN detectors;
    2. push the event into the recent window, moving the oldest recent event
       into the reference window and dropping the oldest reference event;
    3. every ``check_every_events`` events with both windows full, compare the
       windows. After an alarm the recent window becomes the reference and the
       recent window starts empty, so one shift raises one alarm per signal.

    Only a rise of a never-seen rate raises an alarm, because the rates fall
    on their own as the catalogue and the audience become known.

    NOTE: the seen sets grow by one entry per distinct user and item and start
    empty after a restart. Pass ``new_user`` and ``new_item`` to :meth:`update`
    to take those facts from durable state instead, such as the user's stored
    sequence and the item vocabulary.
    """

    def __init__(self, config: InputDriftConfig | None = None) -> None:
        self.config = config or InputDriftConfig()
        self.n_events = 0
        self._seen_users: set[str] = set()
        self._seen_items: set[str] = set()
        self._new_item_detector = drift.ADWIN(delta=self.config.new_rate_delta)
        self._new_user_detector = drift.ADWIN(delta=self.config.new_rate_delta)
        self._recent: deque[tuple[str, str]] = deque()
        self._reference: deque[tuple[str, str]] = deque()
        self._recent_types: Counter[str] = Counter()
        self._recent_items: Counter[str] = Counter()
        self._reference_types: Counter[str] = Counter()
        self._reference_items: Counter[str] = Counter()
        self._drift_detected = False

    @property
    def drift_detected(self) -> bool:
        """Whether the last update raised an alarm."""
        return self._drift_detected

    @property
    def n_reference_events(self) -> int:
        """Events in the reference window, at most ``reference_events``."""
        return len(self._reference)

    @property
    def n_recent_events(self) -> int:
        """Events in the recent window, at most ``recent_events``."""
        return len(self._recent)

    def update(self, event: Event, new_user: bool | None = None, new_item: bool | None = None) -> list[DriftAlarm]:
        """Add one event and return the alarms it raised, at most one per signal.

        ``new_user`` and ``new_item`` are True when the event's user or item
        was never seen before. When None, the monitor decides from the users
        and items it has been given.
        """
        self.n_events += 1
        alarms = []

        if new_user is None:
            new_user = event.user_id not in self._seen_users
            self._seen_users.add(event.user_id)
        if new_item is None:
            new_item = event.item_id not in self._seen_items
            self._seen_items.add(event.item_id)
        for signal, detector, indicator in (
            ("new_item_rate", self._new_item_detector, new_item),
            ("new_user_rate", self._new_user_detector, new_user),
        ):
            change = _update_adwin(detector, float(indicator))
            if change is not None and change.after_mean > change.before_mean:
                alarms.append(change.to_alarm(signal, event.ts, self.n_events, self.config.new_rate_delta))

        self._push(event.type, event.item_id)

        if self._due_for_check():
            window_alarms = self._compare_windows(event.ts)
            if window_alarms:
                self._restart_reference()
            alarms.extend(window_alarms)

        self._drift_detected = bool(alarms)
        return alarms

    def _push(self, event_type: str, item_id: str) -> None:
        self._recent.append((event_type, item_id))
        self._recent_types[event_type] += 1
        self._recent_items[item_id] += 1
        if len(self._recent) > self.config.recent_events:
            moved_type, moved_item = self._recent.popleft()
            _decrement(self._recent_types, moved_type)
            _decrement(self._recent_items, moved_item)
            self._reference.append((moved_type, moved_item))
            self._reference_types[moved_type] += 1
            self._reference_items[moved_item] += 1
        if len(self._reference) > self.config.reference_events:
            dropped_type, dropped_item = self._reference.popleft()
            _decrement(self._reference_types, dropped_type)
            _decrement(self._reference_items, dropped_item)

    def _due_for_check(self) -> bool:
        config = self.config
        return (
            self.n_events % config.check_every_events == 0
            and len(self._recent) == config.recent_events
            and len(self._reference) == config.reference_events
        )

    def _compare_windows(self, ts: float) -> list[DriftAlarm]:
        config = self.config
        alarms = []

        reference_types = {t: float(self._reference_types[t]) for t in EVENT_TYPES}
        recent_types = {t: float(self._recent_types[t]) for t in EVENT_TYPES}
        divergence = js_divergence(reference_types, recent_types)
        if divergence > config.event_type_threshold:
            alarms.append(DriftAlarm(
                detector="js_divergence",
                signal="event_type_mix",
                event_ts=ts,
                n_seen=self.n_events,
                before=_shares_summary(reference_types),
                after=_shares_summary(recent_types),
                threshold=config.event_type_threshold,
                value=divergence,
            ))

        reference_items = _top_with_other(self._reference_items, self._recent_items, config.top_items)
        recent_items = _top_with_other(self._recent_items, self._reference_items, config.top_items)
        divergence = js_divergence(reference_items, recent_items)
        if divergence > config.item_popularity_threshold:
            alarms.append(DriftAlarm(
                detector="js_divergence",
                signal="item_popularity",
                event_ts=ts,
                n_seen=self.n_events,
                before=_items_summary(self._reference_items),
                after=_items_summary(self._recent_items),
                threshold=config.item_popularity_threshold,
                value=divergence,
            ))
        return alarms

    def _restart_reference(self) -> None:
        self._reference, self._recent = self._recent, deque()
        self._reference_types, self._recent_types = self._recent_types, Counter()
        self._reference_items, self._recent_items = self._recent_items, Counter()


def js_divergence(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Return the Jensen-Shannon divergence, in bits, of two count (or weight) distributions.

    Both mappings are normalized to sum 1. A key missing from one counts as 0.
    The result lies in [0, 1]: 0 for equal distributions, 1 for disjoint ones.
    Raises ValueError when either total is not positive.

    >>> round(js_divergence({"a": 3, "b": 1}, {"a": 1, "b": 3}), 4)
    0.1887
    >>> js_divergence({"a": 1}, {"b": 1})
    1.0
    """
    p_total = sum(p.values())
    q_total = sum(q.values())
    if not p_total > 0 or not q_total > 0:
        raise ValueError(f"invalid distributions with totals {p_total!r} and {q_total!r}: expected positive totals")
    divergence = 0.0
    for key in set(p) | set(q):
        p_share = p.get(key, 0.0) / p_total
        q_share = q.get(key, 0.0) / q_total
        mid = (p_share + q_share) / 2
        if p_share > 0:
            divergence += p_share * math.log2(p_share / mid) / 2
        if q_share > 0:
            divergence += q_share * math.log2(q_share / mid) / 2
    return min(max(divergence, 0.0), 1.0)


def _top_with_other(counts: Counter[str], other_counts: Counter[str], n_top: int) -> dict[str, float]:
    """Restrict ``counts`` to the top items of both windows, pooling the rest under OTHER_ITEMS."""
    # Ties are broken by item id so that the support does not depend on arrival order.
    support = set(_top_items(counts, n_top)) | set(_top_items(other_counts, n_top))
    restricted = {item: float(counts[item]) for item in support}
    restricted[OTHER_ITEMS] = float(sum(counts.values()) - sum(restricted.values()))
    return restricted


def _top_items(counts: Counter[str], n_top: int) -> list[str]:
    return [item for item, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n_top]]


def _shares_summary(counts: Mapping[str, float]) -> dict[str, Any]:
    total = sum(counts.values())
    return {"size": int(total), "shares": {key: round(value / total, 4) for key, value in counts.items()}}


def _items_summary(counts: Counter[str]) -> dict[str, Any]:
    total = sum(counts.values())
    top = _top_items(counts, SUMMARY_TOP_ITEMS)
    return {
        "size": total,
        "distinct_items": len(counts),
        "top_items": {item: round(counts[item] / total, 4) for item in top},
    }


def _decrement(counts: Counter[str], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]

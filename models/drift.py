"""Drift detection on the prequential quality stream and on the input event stream.

Two monitors, both built on River's detectors (River 0.26):

* :class:`QualityDriftMonitor` watches what the model achieves. ADWIN runs on
  the per-event reciprocal rank (or 0/1 hit) of the prequential stream, where
  each event is scored before the model learns from it. Page-Hinkley runs on
  the training loss of each micro-batch.
* :class:`InputDriftMonitor` watches what arrives. It compares the event-type
  mix and the item popularity of the last ``recent_events`` events with the
  ``reference_events`` events before them, by Jensen-Shannon divergence, and
  runs ADWIN on 0/1 indicators of never-seen items and never-seen users.

Monitors do not log. Each ``update`` returns the alarms it raised, as
:class:`DriftAlarm` values, and ``drift_detected`` is True when the last
update raised one. The caller logs and publishes the alarms.

Divergences are in bits (base-2 logarithm), so they lie in [0, 1]. Windows
are counted in events, losses in the trainer's loss units.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from river import drift

from streams.events import EVENT_TYPES, Event

__all__ = [
    "DriftAlarm",
    "InputDriftConfig",
    "InputDriftMonitor",
    "QualityDriftConfig",
    "QualityDriftMonitor",
    "js_divergence",
]

# Items named in the before/after summary of an item-popularity alarm.
SUMMARY_TOP_ITEMS = 5
# Name of the bucket that pools every item outside the compared top items.
OTHER_ITEMS = "__other__"


@dataclass(frozen=True)
class DriftAlarm:
    """One drift alarm raised by a monitor.

    ``before`` and ``after`` summarize the two windows the detector compared,
    by ``mean`` and ``size`` or by event shares and ``size``:

    * ADWIN: the older events it dropped and the newer ones it kept. It drops
      its oldest buckets until the rest shows no change, so ``after`` can
      still contain events from before the change.
    * Page-Hinkley: the losses since its last reset, without the last
      ``loss_recent_batches``, and those last batches.
    * Jensen-Shannon divergence: the reference and the recent window.

    ``value`` is the statistic that crossed
    ``threshold``: the Jensen-Shannon divergence in bits against its
    threshold, or the Page-Hinkley cumulative deviation against lambda. ADWIN
    has no fixed cut-off, because its bound depends on the window sizes and
    variance, so for ADWIN ``value`` is the absolute difference of the window
    means and ``threshold`` is the significance level delta.

    ``detector`` is "adwin", "page_hinkley" or "js_divergence". ``signal`` is
    "reciprocal_rank", "training_loss", "event_type_mix", "item_popularity",
    "new_item_rate" or "new_user_rate". ``n_seen`` counts the updates the
    monitor had received for this signal, the current one included: events
    for the input signals and the reciprocal rank, micro-batches for the
    training loss. ``event_ts`` is the time passed with the update that
    raised the alarm, in Unix seconds.
    """

    detector: str
    signal: str
    event_ts: float
    n_seen: int
    before: dict[str, Any]
    after: dict[str, Any]
    threshold: float
    value: float

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form; the publisher adds ``model_version``."""
        return {
            "detector": self.detector,
            "signal": self.signal,
            "event_ts": self.event_ts,
            "n_seen": self.n_seen,
            "before": _json_ready(self.before),
            "after": _json_ready(self.after),
            "threshold": self.threshold,
            "value": self.value,
        }


@dataclass(frozen=True)
class QualityDriftConfig:
    """Thresholds of a :class:`QualityDriftMonitor`.

    ``rank_*`` set the ADWIN detector on the reciprocal rank. ``rank_delta``
    is its significance level: smaller means fewer false alarms and later
    detection. ADWIN tests for a change every ``rank_clock`` updates, which
    bounds how soon it can fire. With ``rank_mode="down"`` only a fall of the
    reciprocal rank raises an alarm, so a model that improves while it warms
    up stays silent. ``"both"`` also reports a rise.

    ``loss_*`` set the Page-Hinkley detector on the training loss of each
    micro-batch. ``loss_threshold`` (lambda) and ``loss_delta`` are in loss
    units: each batch adds its deviation from the running mean minus
    ``loss_delta``, and an alarm fires when that sum moves more than
    ``loss_threshold`` above its minimum. No alarm fires before
    ``loss_min_instances`` batches. With ``loss_mode="up"`` only a rise of the
    loss counts, because the loss falls on its own while the model learns.
    ``loss_recent_batches`` is the number of batches an alarm's ``after``
    summary averages.

    The loss defaults assume per-batch noise of about 0.2 (standard
    deviation), as measured for ``TrainerConfig`` defaults on a synthetic
    stream. Then a rise of 0.5 is detected about 10 batches later, and a
    stationary or falling loss stays silent. Both sets of defaults are
    estimates, not tuned on production traffic.
    """

    rank_delta: float = 0.002
    rank_clock: int = 32
    rank_mode: str = "down"
    loss_threshold: float = 5.0
    loss_delta: float = 0.05
    loss_min_instances: int = 30
    loss_mode: str = "up"
    loss_recent_batches: int = 10

    def __post_init__(self) -> None:
        _check_open_unit("QualityDriftConfig", "rank_delta", self.rank_delta)
        _check_int("QualityDriftConfig", "rank_clock", self.rank_clock, minimum=1)
        _check_choice("QualityDriftConfig", "rank_mode", self.rank_mode, ("down", "both"))
        _check_real("QualityDriftConfig", "loss_threshold", self.loss_threshold, minimum=0.0, exclusive=True)
        _check_real("QualityDriftConfig", "loss_delta", self.loss_delta, minimum=0.0)
        _check_int("QualityDriftConfig", "loss_min_instances", self.loss_min_instances, minimum=1)
        _check_choice("QualityDriftConfig", "loss_mode", self.loss_mode, ("up", "both"))
        _check_int("QualityDriftConfig", "loss_recent_batches", self.loss_recent_batches, minimum=1)


class QualityDriftMonitor:
    """ADWIN on the prequential reciprocal rank, Page-Hinkley on the training loss.

    Call :meth:`update_rank` once per scored event, with the reciprocal rank
    of the item the user went on to interact with. The value is 0.0 when that
    item was not in the list, and a 0/1 hit works too. Call
    :meth:`update_loss` once per micro-batch. After every detection, reported
    or not, each River detector starts a fresh window on its next update.

    A hit rate that falls from 0.3 to 0.05 at event 2000 raises one alarm,
    80 events later. ADWIN kept 1312 events, most from before the change:

    >>> import random
    >>> rng = random.Random(7)
    >>> hits = [float(rng.random() < 0.3) for _ in range(2000)]
    >>> hits += [float(rng.random() < 0.05) for _ in range(2000)]
    >>> monitor = QualityDriftMonitor()
    >>> for n, hit in enumerate(hits):
    ...     for alarm in monitor.update_rank(hit, ts=1_700_000_000.0 + n):
    ...         print(n, alarm.signal, alarm.before, alarm.after)
    2079 reciprocal_rank {'mean': 0.3372, 'size': 768} {'mean': 0.2973, 'size': 1312}
    >>> monitor.drift_detected
    False
    """

    def __init__(self, config: QualityDriftConfig | None = None) -> None:
        self.config = config or QualityDriftConfig()
        self.n_ranks = 0
        self.n_losses = 0
        self._rank_detector = drift.ADWIN(delta=self.config.rank_delta, clock=self.config.rank_clock)
        self._loss_detector = drift.PageHinkley(
            min_instances=self.config.loss_min_instances,
            delta=self.config.loss_delta,
            threshold=self.config.loss_threshold,
            mode=self.config.loss_mode,
        )
        self._loss_window = _LossWindow(self.config.loss_recent_batches)
        self._drift_detected = False

    @property
    def drift_detected(self) -> bool:
        """Whether the last update, of either signal, raised an alarm."""
        return self._drift_detected

    def update_rank(self, reciprocal_rank: float, ts: float) -> list[DriftAlarm]:
        """Add one event's reciprocal rank, in [0, 1], and return the alarms it raised.

        Raises ValueError for a value outside [0, 1] or not a number.
        """
        if isinstance(reciprocal_rank, bool) or not isinstance(reciprocal_rank, (int, float)) \
                or not 0.0 <= reciprocal_rank <= 1.0:
            raise ValueError(f"invalid reciprocal_rank {reciprocal_rank!r}: expected a number in [0, 1]")
        self.n_ranks += 1
        change = _update_adwin(self._rank_detector, float(reciprocal_rank))
        alarms = []
        if change is not None and (self.config.rank_mode == "both" or change.after_mean < change.before_mean):
            alarms.append(change.to_alarm("reciprocal_rank", ts, self.n_ranks, self.config.rank_delta))
        self._drift_detected = bool(alarms)
        return alarms

    def update_loss(self, loss: float, ts: float) -> list[DriftAlarm]:
        """Add one micro-batch's training loss and return the alarms it raised.

        Raises ValueError for a loss that is not a finite number.
        """
        if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not math.isfinite(loss):
            raise ValueError(f"invalid loss {loss!r}: expected a finite number")
        self.n_losses += 1
        detector = self._loss_detector
        if detector.drift_detected:
            # River resets Page-Hinkley on this update, so the summary restarts with it.
            self._loss_window.reset()
        detector.update(float(loss))
        self._loss_window.add(float(loss))
        alarms = []
        if detector.drift_detected:
            before, after = self._loss_window.summaries()
            alarms.append(DriftAlarm(
                detector="page_hinkley",
                signal="training_loss",
                event_ts=ts,
                n_seen=self.n_losses,
                before=before,
                after=after,
                threshold=self.config.loss_threshold,
                value=_page_hinkley_statistic(detector),
            ))
        self._drift_detected = bool(alarms)
        return alarms


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


@dataclass(frozen=True)
class _AdwinChange:
    """The two sub-windows ADWIN compared when it detected a change."""

    before_mean: float
    before_size: int
    after_mean: float
    after_size: int

    def to_alarm(self, signal: str, ts: float, n_seen: int, delta: float) -> DriftAlarm:
        return DriftAlarm(
            detector="adwin",
            signal=signal,
            event_ts=ts,
            n_seen=n_seen,
            before={"mean": round(self.before_mean, 4), "size": self.before_size},
            after={"mean": round(self.after_mean, 4), "size": self.after_size},
            threshold=delta,
            value=abs(self.after_mean - self.before_mean),
        )


def _update_adwin(detector: drift.ADWIN, x: float) -> _AdwinChange | None:
    """Feed ``x`` to ADWIN and, when it detects a change, return the windows it compared.

    On a detection ADWIN drops its older sub-window, so the dropped part is
    the difference between the window before and after this update.
    """
    if detector.drift_detected:
        # River empties the window on the update after a detection.
        width_before, total_before = 0, 0.0
    else:
        width_before, total_before = int(detector.width), detector.total
    detector.update(x)
    if not detector.drift_detected:
        return None
    after_size = int(detector.width)
    after_total = detector.total
    before_size = width_before + 1 - after_size
    before_total = total_before + x - after_total
    return _AdwinChange(
        before_mean=before_total / before_size if before_size else 0.0,
        before_size=before_size,
        after_mean=after_total / after_size if after_size else 0.0,
        after_size=after_size,
    )


def _page_hinkley_statistic(detector: drift.PageHinkley) -> float:
    """Return the Page-Hinkley cumulative deviation that River compares with lambda.

    NOTE: this reads private fields of River 0.26's PageHinkley. The tests of
    this module compare the result with the threshold, so they fail after a
    River upgrade that renames those fields.
    """
    increase = detector._sum_increase - detector._min_increase
    decrease = detector._max_decrease - detector._sum_decrease
    if detector.mode == "up":
        return float(increase)
    if detector.mode == "down":
        return float(decrease)
    return float(max(increase, decrease))


class _LossWindow:
    """Losses since the detector's last reset, split into older ones and the last ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.reset()

    def reset(self) -> None:
        self.n_total = 0
        self.sum_total = 0.0
        self.recent: deque[float] = deque(maxlen=self.size)

    def add(self, loss: float) -> None:
        self.n_total += 1
        self.sum_total += loss
        self.recent.append(loss)

    def summaries(self) -> tuple[dict[str, Any], dict[str, Any]]:
        n_recent = len(self.recent)
        sum_recent = sum(self.recent)
        n_older = self.n_total - n_recent
        older_mean = (self.sum_total - sum_recent) / n_older if n_older else 0.0
        before = {"mean": round(older_mean, 4), "size": n_older}
        after = {"mean": round(sum_recent / n_recent, 4), "size": n_recent}
        return before, after


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


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


def _check_int(owner: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"invalid {owner}.{name} {value!r}: expected an integer")
    if value < minimum:
        raise ValueError(f"invalid {owner}.{name} {value!r}: expected at least {minimum}")


def _check_real(owner: str, name: str, value: Any, minimum: float, exclusive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"invalid {owner}.{name} {value!r}: expected a finite number")
    if value < minimum or (exclusive and value == minimum):
        bound = f"greater than {minimum}" if exclusive else f"at least {minimum}"
        raise ValueError(f"invalid {owner}.{name} {value!r}: expected a number {bound}")


def _check_open_unit(owner: str, name: str, value: Any) -> None:
    _check_real(owner, name, value, minimum=0.0, exclusive=True)
    if value >= 1.0:
        raise ValueError(f"invalid {owner}.{name} {value!r}: expected a significance level in (0, 1)")


def _check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"invalid {owner}.{name} {value!r}: expected one of {', '.join(choices)}")

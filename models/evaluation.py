"""Prequential (test-then-train) evaluation of recommenders on an event stream.

Each event, in time order, is first a test and then training data. Every
model is asked for a recommendation from what it learned up to the previous
event, and the list is scored against the event's item. Only then does the
model learn the event, so no model can use an event before its list is scored.

The first ``warmup_fraction`` of events are learned but not scored. Two
protocols score the rest:

- ``all``: every event, nothing excluded (a model may still exclude items
  on its own, as the ranker does with purchases);
- ``new_items``: only events whose item the user has not interacted with
  before, and the user's seen items are excluded from the list, so repeats
  cannot score.

Metrics (HR, NDCG, MRR, MAP at each K, and a sampled ROC-AUC for models with
``score``) are averaged overall and per group. equal event-count windows of
the scored part (``window/0`` ...), event types (``type/view`` ...), users
with or without earlier events (``user/returning``, ``user/new``), and items
that appeared earlier in the stream or not (``item/known``, ``item/new``). No
model can recommend an ``item/new`` item, so that group bounds every HR.

The AUC is computed on ``item/known`` events only. A model has learned
nothing about an ``item/new`` item, so its AUC there would measure only how
the model scores unknown items (0, -inf or a default), not its ranking.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from models.baselines.base import Model
from models.drift import QualityDriftMonitor
from models.metrics import AUC_KEY, METRIC_NAMES, MetricTally, metric_key, sampled_auc
from streams.events import Event

__all__ = ["PROTOCOLS", "ModelResult", "Report", "prequential"]

logger = logging.getLogger(__name__)

PROTOCOLS = ("all", "new_items")
OVERALL = "overall"
_NO_ITEMS: frozenset[str] = frozenset()
# Attempts per wanted negative before AUC sampling gives up on a crowded catalogue.
_DRAWS_PER_NEGATIVE = 10


@dataclass
class ModelResult:
    """One model's metric tallies and its time spent, in seconds of wall time.

    ``tallies[protocol][group]`` contains the metrics of that group's events.
    ``recommend_seconds`` covers the lists and ``score_seconds`` the AUC
    scoring. ``train_seconds`` is the model's own count of time spent learning.
    """

    name: str
    settings: dict[str, Any]
    tallies: dict[str, dict[str, MetricTally]]
    train_seconds: float = 0.0
    recommend_seconds: float = 0.0
    score_seconds: float = 0.0
    # Quality drift alarms on this model's reciprocal rank, with the event index they fired at.
    drift_alarms: list[dict[str, Any]] = field(default_factory=list)
    monitor: QualityDriftMonitor = field(default_factory=QualityDriftMonitor, repr=False)

    def metric(self, protocol: str, key: str, group: str = OVERALL) -> float | None:
        """Return the mean of ``key`` (such as ``"HR@10"`` or ``"AUC"``), None when no event was scored."""
        tally = self.tallies.get(protocol, {}).get(group)
        return None if tally is None else tally.means()[key]

    def to_dict(self, n_events: int) -> dict[str, Any]:
        total_s = self.train_seconds + self.recommend_seconds + self.score_seconds
        return {
            "name": self.name,
            "settings": self.settings,
            "train_seconds": self.train_seconds,
            "recommend_seconds": self.recommend_seconds,
            "score_seconds": self.score_seconds,
            "events_per_s": n_events / total_s if total_s > 0 else None,
            "drift_alarms": self.drift_alarms,
            "protocols": {
                protocol: {group: tally.to_dict() for group, tally in sorted(groups.items())}
                for protocol, groups in self.tallies.items()
            },
        }


@dataclass
class Report:
    """The outcome of one prequential run: its settings, windows and every model's results."""

    config: dict[str, Any]
    n_events: int
    n_warmup: int
    windows: list[dict[str, Any]]
    models: list[ModelResult]
    elapsed_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_scored(self) -> int:
        return self.n_events - self.n_warmup

    def result(self, name: str) -> ModelResult:
        for result in self.models:
            if result.name == name:
                return result
        raise KeyError(f"no model named {name!r} in the report: expected one of {[r.name for r in self.models]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            **self.extra,
            "n_events": self.n_events,
            "n_warmup": self.n_warmup,
            "n_scored": self.n_scored,
            "elapsed_s": self.elapsed_s,
            "events_per_s": self.n_events / self.elapsed_s if self.elapsed_s > 0 else None,
            "windows": self.windows,
            "models": [result.to_dict(self.n_events) for result in self.models],
        }

    def format_table(self, protocol: str, keys: Sequence[str] | None = None) -> str:
        """Return a plain-text table of one protocol: a row per model, a column per metric and time."""
        if keys is None:
            k_values = self.config["k_values"]
            keys = [metric_key(name, k) for k in k_values for name in METRIC_NAMES] + [AUC_KEY]
        name_width = max([len("model")] + [len(result.name) for result in self.models])
        header = f"{'model':<{name_width}}  " + "  ".join(f"{key:>8}" for key in keys)
        header += f"  {'train_s':>9}  {'recommend_s':>11}"
        lines = [header, "-" * len(header)]
        for result in self.models:
            values = [result.metric(protocol, key) for key in keys]
            cells = "  ".join(f"{'-':>8}" if value is None else f"{value:8.4f}" for value in values)
            lines.append(f"{result.name:<{name_width}}  {cells}  {result.train_seconds:9.1f}  "
                         f"{result.recommend_seconds + result.score_seconds:11.1f}")
        n_lists = self.models[0].tallies[protocol][OVERALL].n_events if self.models else 0
        title = f"protocol {protocol}: {n_lists:,} scored events of {self.n_events:,}"
        return "\n".join([title] + lines)


def prequential(
    events: Sequence[Event],
    models: Sequence[Model],
    *,
    k_values: Sequence[int] = (10, 20),
    warmup_fraction: float = 0.5,
    protocols: Sequence[str] = PROTOCOLS,
    n_windows: int = 10,
    n_auc_negatives: int = 100,
    auc_every: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> Report:
    """Run the test-then-train loop over ``events`` (sorted by ``ts``) and return the report.

    Steps per event, in this order, so that no model learns an event before its list is scored:
    1. after warm-up, ask every model for its lists (one per protocol that
       scores the event) and add their metrics. On every ``auc_every``-th
       scored event whose item appeared before, also score that item
       against ``n_auc_negatives`` items drawn uniformly from the items seen
       so far. No negative is the event's item or one the user has seen;
    2. let every model learn the event;
    3. record the event's item as seen by the user and known to the stream;
    4. after the last warm-up event, call each model's ``end_warmup``.

    Every model's reciprocal rank at ``min(k_values)`` (on the first protocol
    that scores the event) also feeds a quality drift detector (ADWIN); its
    alarms go into the report with the event index, and a model with an
    ``adapt_to_drift`` method is told about each one, as the worker's trainer is.

    Models are asked for ``max(k_values)`` items. Raises ``ValueError`` for
    invalid settings, events out of time order, or a model that returns more
    than K items or an excluded one. Models learn in place, so pass fresh ones.
    """
    k_values = tuple(k_values)
    _check_settings(events, models, k_values, warmup_fraction, protocols, n_windows, auc_every)
    n_warmup = int(len(events) * warmup_fraction)
    n_scored = len(events) - n_warmup
    max_k = max(k_values)
    results = [_new_result(model, protocols) for model in models]
    stream = _StreamState(random.Random(seed))
    logger.info("prequential run started n_events=%d n_warmup=%d n_models=%d protocols=%s",
                len(events), n_warmup, len(models), ",".join(protocols))
    start = time.perf_counter()

    if n_warmup == 0:
        _end_warmup(models)
    bar = tqdm(events, total=len(events), unit="event", disable=not progress, mininterval=1.0, smoothing=0.05)
    for index, event in enumerate(bar):
        if index >= n_warmup:
            window = (index - n_warmup) * n_windows // n_scored
            want_auc = (index - n_warmup) % auc_every == 0
            _score_event(event, window, want_auc, models, results, stream, protocols, k_values, max_k,
                         n_auc_negatives, index)

        for model in models:
            model.learn(event)

        stream.update(event)

        if index + 1 == n_warmup:
            bar.set_postfix_str("warm-up done", refresh=False)
            _end_warmup(models)

    for model, result in zip(models, results):
        result.train_seconds = model.train_seconds
        describe = getattr(model, "describe", None)
        if describe is not None:
            result.settings = describe()
    report = Report(
        config={
            "k_values": list(k_values), "warmup_fraction": warmup_fraction, "protocols": list(protocols),
            "n_windows": n_windows, "n_auc_negatives": n_auc_negatives, "auc_every": auc_every, "seed": seed,
        },
        n_events=len(events), n_warmup=n_warmup, windows=_windows(events, n_warmup, n_windows),
        models=results, elapsed_s=time.perf_counter() - start,
    )
    logger.info("prequential run finished n_events=%d elapsed_s=%.1f", len(events), report.elapsed_s)
    return report


class _StreamState:
    """The harness's own record of the stream so far: each user's seen items, and every item seen."""

    def __init__(self, rng: random.Random) -> None:
        self.seen: dict[str, set[str]] = {}
        self.items: list[str] = []
        self._known: set[str] = set()
        self._rng = rng

    def update(self, event: Event) -> None:
        self.seen.setdefault(event.user_id, set()).add(event.item_id)
        if event.item_id not in self._known:
            self._known.add(event.item_id)
            self.items.append(event.item_id)

    def knows(self, item_id: str) -> bool:
        return item_id in self._known

    def draw_negatives(self, n: int, target: str, seen: AbstractSet[str]) -> list[str]:
        """Draw up to ``n`` known items, with replacement, that are neither ``target`` nor in ``seen``."""
        negatives: list[str] = []
        if not self.items:
            return negatives
        for _ in range(n * _DRAWS_PER_NEGATIVE):
            item = self.items[self._rng.randrange(len(self.items))]
            if item != target and item not in seen:
                negatives.append(item)
                if len(negatives) == n:
                    break
        return negatives


def _score_event(
    event: Event,
    window: int,
    want_auc: bool,
    models: Sequence[Model],
    results: list[ModelResult],
    stream: _StreamState,
    protocols: Sequence[str],
    k_values: tuple[int, ...],
    max_k: int,
    n_auc_negatives: int,
    index: int,
) -> None:
    """Ask every model for this event's lists, from state before the event, and tally their metrics."""
    seen = stream.seen.get(event.user_id)
    groups = (
        OVERALL,
        f"window/{window}",
        f"type/{event.type}",
        "user/returning" if seen else "user/new",
        "item/known" if stream.knows(event.item_id) else "item/new",
    )
    excludes, list_of = _plan_lists(event, seen, protocols)
    if not excludes:
        return
    negatives: list[str] = []
    if want_auc and stream.knows(event.item_id):
        negatives = stream.draw_negatives(n_auc_negatives, event.item_id, seen or _NO_ITEMS)

    for model, result in zip(models, results):
        started = time.perf_counter()
        lists = _recommend_lists(model, event.user_id, max_k, excludes)
        result.recommend_seconds += time.perf_counter() - started
        for protocol, list_index in list_of.items():
            _check_list(model, lists[list_index], max_k, excludes[list_index])
            for group in groups:
                _tally(result, protocol, group, k_values).add(lists[list_index], event.item_id)
        _watch_quality(model, result, lists[next(iter(list_of.values()))], event, min(k_values), index)

        score = getattr(model, "score", None)
        if negatives and score is not None:
            started = time.perf_counter()
            scores = score(event.user_id, [event.item_id, *negatives])
            result.score_seconds += time.perf_counter() - started
            auc = sampled_auc(scores[0], scores[1:])
            for protocol in list_of:
                for group in groups:
                    _tally(result, protocol, group, k_values).add_auc(auc)


def _plan_lists(
    event: Event, seen: set[str] | None, protocols: Sequence[str]
) -> tuple[list[AbstractSet[str]], dict[str, int]]:
    """Return the exclusion sets to request and, per scoring protocol, the index of its list.

    A user with no seen item needs one list for both protocols.
    """
    excludes: list[AbstractSet[str]] = []
    list_of: dict[str, int] = {}
    if "all" in protocols:
        excludes.append(_NO_ITEMS)
        list_of["all"] = 0
    if "new_items" in protocols and (not seen or event.item_id not in seen):
        if seen:
            excludes.append(frozenset(seen))
        elif not excludes:
            excludes.append(_NO_ITEMS)
        list_of["new_items"] = len(excludes) - 1
    return excludes, list_of


def _watch_quality(model: Model, result: ModelResult, ranked: list[str], event: Event, k: int, index: int) -> None:
    top = ranked[:k]
    reciprocal_rank = 1.0 / (top.index(event.item_id) + 1) if event.item_id in top else 0.0
    for alarm in result.monitor.update_rank(reciprocal_rank, event.ts):
        adapt = getattr(model, "adapt_to_drift", None)
        adapted = bool(adapt()) if adapt is not None else False
        result.drift_alarms.append({"index": index, **alarm.to_dict(), "adapted": adapted})


def _recommend_lists(model: Model, user_id: str, k: int, excludes: list[AbstractSet[str]]) -> list[list[str]]:
    batched = getattr(model, "recommend_lists", None)
    if batched is not None:
        return batched(user_id, k, excludes)
    return [model.recommend(user_id, k, exclude) for exclude in excludes]


def _check_list(model: Model, ranked: list[str], k: int, exclude: AbstractSet[str]) -> None:
    if len(ranked) > k:
        raise ValueError(f"model {model.name!r} returned {len(ranked)} items; expected at most k = {k}")
    if exclude:
        leaked = [item for item in ranked if item in exclude]
        if leaked:
            raise ValueError(f"model {model.name!r} returned the excluded item {leaked[0]!r}; "
                             "recommend must drop every item of exclude")


def _tally(result: ModelResult, protocol: str, group: str, k_values: tuple[int, ...]) -> MetricTally:
    groups = result.tallies[protocol]
    tally = groups.get(group)
    if tally is None:
        tally = groups[group] = MetricTally(k_values)
    return tally


def _new_result(model: Model, protocols: Sequence[str]) -> ModelResult:
    return ModelResult(name=model.name, settings={}, tallies={protocol: {} for protocol in protocols})


def _end_warmup(models: Sequence[Model]) -> None:
    for model in models:
        end_warmup = getattr(model, "end_warmup", None)
        if end_warmup is not None:
            end_warmup()


def _windows(events: Sequence[Event], n_warmup: int, n_windows: int) -> list[dict[str, Any]]:
    """Return each window's first and last event index (0-based, inclusive) and event-time span."""
    n_scored = len(events) - n_warmup
    bounds: dict[int, list[int]] = {}
    for offset in range(n_scored):
        window = offset * n_windows // n_scored
        bounds.setdefault(window, [offset, offset])[1] = offset
    return [
        {
            "window": window,
            "first_event": n_warmup + first,
            "last_event": n_warmup + last,
            "start_ts": events[n_warmup + first].ts,
            "end_ts": events[n_warmup + last].ts,
        }
        for window, (first, last) in sorted(bounds.items())
    ]


def _check_settings(
    events: Sequence[Event],
    models: Sequence[Model],
    k_values: tuple[int, ...],
    warmup_fraction: float,
    protocols: Sequence[str],
    n_windows: int,
    auc_every: int,
) -> None:
    if not models:
        raise ValueError("no model to evaluate: pass at least one model")
    names = [model.name for model in models]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    if not k_values or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in k_values):
        raise ValueError(f"invalid k_values {list(k_values)}: expected one or more integers >= 1")
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"invalid warmup_fraction {warmup_fraction}: expected a value in [0, 1)")
    unknown = [protocol for protocol in protocols if protocol not in PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(f"invalid protocols {list(protocols)}: expected one or more of {', '.join(PROTOCOLS)}")
    if n_windows < 1 or auc_every < 1:
        raise ValueError(f"invalid n_windows {n_windows} or auc_every {auc_every}: expected both >= 1")
    for index in range(1, len(events)):
        if events[index].ts < events[index - 1].ts:
            raise ValueError(f"events are not sorted by ts: event {index} ({events[index].event_id}) has ts "
                             f"{events[index].ts} < {events[index - 1].ts}; sort them, as load_events does")

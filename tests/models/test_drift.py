"""Tests of the drift monitors on seeded streams with a change at a known event.

Detection indices are pinned from seeded runs (River 0.26.1). Quality streams
change at index 3000 (reciprocal rank) and batch 300 (loss). Synthetic event
streams have 20,000 events and change at event 10,000, where the
``InputDriftConfig`` defaults compare 1,000 recent events with 5,000 before
them every 250 events, so a windowed alarm comes at least 250 events late.
"""

from __future__ import annotations

import dataclasses
import doctest
import json
import math
import random

import pytest

import models.drift.quality
from models.drift import (
    DriftAlarm,
    InputDriftConfig,
    InputDriftMonitor,
    QualityDriftConfig,
    QualityDriftMonitor,
    js_divergence,
)
from streams.events import Event
from streams.synthetic import SyntheticConfig, generate

CHANGE_INDEX = 10_000
N_EVENTS = 20_000
LOSS_CHANGE_BATCH = 300
RANK_CHANGE_INDEX = 3_000


def _hits(seed: int, rates: tuple[float, float], n_each: int = RANK_CHANGE_INDEX) -> list[float]:
    rng = random.Random(seed)
    return [float(rng.random() < rate) for rate in rates for _ in range(n_each)]


def _rank_alarms(values: list[float], config: QualityDriftConfig | None = None) -> list[tuple[int, DriftAlarm]]:
    monitor = QualityDriftMonitor(config)
    return [(n, alarm) for n, value in enumerate(values) for alarm in monitor.update_rank(value, ts=float(n))]


def _loss_alarms(losses: list[float], config: QualityDriftConfig | None = None) -> list[tuple[int, DriftAlarm]]:
    monitor = QualityDriftMonitor(config)
    return [(n, alarm) for n, loss in enumerate(losses) for alarm in monitor.update_loss(loss, ts=float(n))]


def _input_alarms(events: list[Event], monitor: InputDriftMonitor | None = None) -> list[tuple[int, str, str]]:
    monitor = monitor or InputDriftMonitor()
    return [(n, alarm.detector, alarm.signal) for n, event in enumerate(events) for alarm in monitor.update(event)]


def _stream(seed: int, **overrides) -> list[Event]:
    return list(generate(SyntheticConfig(n_events=N_EVENTS, seed=seed, **overrides)))


def _spliced(first: SyntheticConfig, second: SyntheticConfig) -> list[Event]:
    """Return CHANGE_INDEX events of ``first`` followed by CHANGE_INDEX events of ``second``."""
    before = list(generate(dataclasses.replace(first, n_events=CHANGE_INDEX)))
    after = generate(dataclasses.replace(second, n_events=CHANGE_INDEX, start_ts=before[-1].ts))
    return before + list(after)


def _remapped_from_change(events: list[Event], **field_prefixes: str) -> list[Event]:
    """Prefix the named id fields of every event from CHANGE_INDEX on, making them never seen."""
    out = list(events[:CHANGE_INDEX])
    for event in events[CHANGE_INDEX:]:
        changes = {name: prefix + getattr(event, name) for name, prefix in field_prefixes.items()}
        out.append(dataclasses.replace(event, **changes))
    return out


def test_drift_doctests_pass():
    failures, attempted = doctest.testmod(models.drift.quality)

    assert attempted > 0
    assert failures == 0


# --- QualityDriftMonitor: reciprocal rank ---


def test_hit_rate_drop_detected_103_events_after():
    # Hit rate 0.3 for 3000 events, then 0.05. ADWIN checks every 32 events.
    alarms = _rank_alarms(_hits(seed=0, rates=(0.3, 0.05)))

    assert [n for n, _ in alarms] == [3103]
    alarm = alarms[0][1]
    assert (alarm.detector, alarm.signal) == ("adwin", "reciprocal_rank")
    assert alarm.n_seen == 3104
    assert alarm.event_ts == 3103.0
    assert alarm.after["mean"] < alarm.before["mean"]
    assert alarm.threshold == 0.002


@pytest.mark.parametrize("seed", range(5))
def test_hit_rate_drop_detected_within_160_events(seed):
    alarms = _rank_alarms(_hits(seed=seed, rates=(0.3, 0.05)))

    assert len(alarms) == 1
    assert RANK_CHANGE_INDEX < alarms[0][0] <= RANK_CHANGE_INDEX + 160


def test_reciprocal_rank_drop_detected():
    # A hit lands at a rank drawn uniformly from 1..10, so its reciprocal rank is 1/rank.
    rng = random.Random(11)
    values = [
        1.0 / rng.randint(1, 10) if rng.random() < rate else 0.0
        for rate in (0.3, 0.05)
        for _ in range(RANK_CHANGE_INDEX)
    ]

    alarms = _rank_alarms(values)

    # The mean falls from about 0.088 to 0.015, a smaller step than the hit rate's, so detection is later.
    assert [n for n, _ in alarms] == [3295]


@pytest.mark.parametrize("seed", range(5))
def test_stationary_hit_rate_raises_no_alarm(seed):
    config = QualityDriftConfig(rank_mode="both")

    assert _rank_alarms(_hits(seed=seed, rates=(0.3, 0.3)), config) == []


def test_hit_rate_rise_silent_in_down_mode():
    assert _rank_alarms(_hits(seed=0, rates=(0.05, 0.3))) == []


def test_hit_rate_rise_reported_in_both_mode():
    alarms = _rank_alarms(_hits(seed=0, rates=(0.05, 0.3)), QualityDriftConfig(rank_mode="both"))

    assert [n for n, _ in alarms] == [3103]
    assert alarms[0][1].after["mean"] > alarms[0][1].before["mean"]


def test_drift_detected_only_on_alarm_update():
    monitor = QualityDriftMonitor()
    flags = [monitor.update_rank(hit, ts=float(n)) != [] for n, hit in enumerate(_hits(0, (0.3, 0.05)))]

    assert flags.index(True) == 3103
    monitor.update_rank(0.0, ts=6000.0)
    assert not monitor.drift_detected


@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan, True, "0.5"])
def test_update_rank_rejects_invalid_value(value):
    with pytest.raises(ValueError, match="reciprocal_rank"):
        QualityDriftMonitor().update_rank(value, ts=0.0)


# --- QualityDriftMonitor: training loss ---


def _losses(seed: int, jump: float) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(5.0 + (jump if n >= LOSS_CHANGE_BATCH else 0.0), 0.2) for n in range(2 * LOSS_CHANGE_BATCH)]


def test_loss_jump_detected_10_batches_after():
    alarms = _loss_alarms(_losses(seed=0, jump=0.5))

    assert [n for n, _ in alarms] == [310]
    alarm = alarms[0][1]
    assert (alarm.detector, alarm.signal) == ("page_hinkley", "training_loss")
    assert alarm.value > alarm.threshold == 5.0
    assert alarm.before == {"mean": 4.9977, "size": 301}
    assert alarm.after["size"] == 10
    assert alarm.after["mean"] > 5.4


@pytest.mark.parametrize("seed", range(5))
def test_loss_jump_detected_within_15_batches(seed):
    alarms = _loss_alarms(_losses(seed=seed, jump=0.5))

    assert len(alarms) == 1
    assert LOSS_CHANGE_BATCH < alarms[0][0] <= LOSS_CHANGE_BATCH + 15


@pytest.mark.parametrize("seed", range(5))
def test_stationary_loss_raises_no_alarm(seed):
    assert _loss_alarms(_losses(seed=seed, jump=0.0) * 3) == []


def test_falling_loss_raises_no_alarm():
    # A learning curve: 6.5 decaying towards 5.0 over about 100 batches.
    rng = random.Random(3)
    losses = [5.0 + 1.5 * math.exp(-n / 100) + rng.gauss(0.0, 0.2) for n in range(2000)]

    assert _loss_alarms(losses) == []


def test_update_loss_rejects_non_finite():
    with pytest.raises(ValueError, match="inf"):
        QualityDriftMonitor().update_loss(math.inf, ts=0.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("rank_delta", 0.0), ("rank_delta", 1.0), ("rank_clock", 0), ("rank_mode", "up"),
     ("loss_threshold", 0.0), ("loss_delta", -0.1), ("loss_min_instances", 0), ("loss_mode", "down"),
     ("loss_recent_batches", 0), ("rank_clock", 2.5)],
)
def test_quality_config_rejects_out_of_range(field, value):
    with pytest.raises(ValueError, match=f"QualityDriftConfig.{field} {value!r}"):
        QualityDriftConfig(**{field: value})


# --- InputDriftMonitor ---


@pytest.mark.parametrize("seed", [1, 2])
def test_stationary_stream_raises_no_input_alarm(seed):
    assert _input_alarms(_stream(seed)) == []


def test_popularity_swap_detected():
    # Seed 2 draws other item ranks and user interests over the same item ids.
    events = _spliced(SyntheticConfig(seed=1), SyntheticConfig(seed=2))

    alarms = _input_alarms(events)

    # Items popular under seed 2 include tail items seed 1 never produced.
    assert alarms == [(10079, "adwin", "new_item_rate"), (10499, "js_divergence", "item_popularity")]


def test_event_type_mix_shift_detected():
    # The same world (seed 1) with more add_to_cart and purchase events.
    events = _spliced(SyntheticConfig(seed=1), SyntheticConfig(seed=1, add_to_cart_prob=0.4, purchase_prob=0.6))

    alarms = _input_alarms(events)

    assert alarms == [(10499, "js_divergence", "event_type_mix")]


def test_new_catalogue_segment_detected():
    # Items of two of ten clusters get new ids from the change on.
    events = _stream(1)
    changed = [
        dataclasses.replace(event, item_id="new-" + event.item_id)
        if n >= CHANGE_INDEX and event.category in ("c0", "c1") else event
        for n, event in enumerate(events)
    ]

    alarms = _input_alarms(changed)

    assert alarms == [(10207, "adwin", "new_item_rate"), (10999, "js_divergence", "item_popularity")]


def test_new_audience_detected():
    events = _remapped_from_change(_stream(1), user_id="new-")

    alarms = _input_alarms(events)

    assert alarms == [(10015, "adwin", "new_user_rate")]


def test_caller_new_user_flag_overrides():
    events = _remapped_from_change(_stream(1), user_id="new-")
    monitor = InputDriftMonitor()

    alarms = [alarm for event in events for alarm in monitor.update(event, new_user=False)]

    assert alarms == []


def test_alarm_resets_reference_to_recent_window():
    events = _spliced(SyntheticConfig(seed=1), SyntheticConfig(seed=1, add_to_cart_prob=0.4, purchase_prob=0.6))
    monitor = InputDriftMonitor()
    for event in events[:10_500]:
        monitor.update(event)

    assert monitor.drift_detected
    assert monitor.n_reference_events == 1_000
    assert monitor.n_recent_events == 0


def test_item_popularity_alarm_summarizes_windows():
    monitor = InputDriftMonitor()
    events = _spliced(SyntheticConfig(seed=1), SyntheticConfig(seed=2))
    alarms = [alarm for event in events for alarm in monitor.update(event) if alarm.signal == "item_popularity"]

    alarm = alarms[0]
    assert alarm.n_seen == 10_500
    assert alarm.event_ts == events[10_499].ts
    assert alarm.value > alarm.threshold == 0.1
    assert alarm.before["size"] == 5_000
    assert alarm.after["size"] == 1_000
    assert len(alarm.after["top_items"]) == 5


@pytest.mark.parametrize(
    ("field", "value"),
    [("reference_events", 0), ("recent_events", 0), ("check_every_events", 0), ("top_items", 0),
     ("event_type_threshold", 0.0), ("item_popularity_threshold", 1.5), ("new_rate_delta", 1.0)],
)
def test_input_config_rejects_out_of_range(field, value):
    with pytest.raises(ValueError, match=f"InputDriftConfig.{field} {value!r}"):
        InputDriftConfig(**{field: value})


# --- DriftAlarm and js_divergence ---


def test_alarm_to_dict_is_json_ready():
    alarm = DriftAlarm(
        detector="js_divergence", signal="event_type_mix", event_ts=1.5, n_seen=7,
        before={"size": 4, "shares": {"view": 1.0}}, after={"size": 4, "shares": {"view": 0.5}},
        threshold=0.01, value=0.2,
    )

    decoded = json.loads(json.dumps(alarm.to_dict()))

    assert decoded["signal"] == "event_type_mix"
    assert decoded["after"] == {"size": 4, "shares": {"view": 0.5}}
    assert set(decoded) == {"detector", "signal", "event_ts", "n_seen", "before", "after", "threshold", "value"}


def test_js_divergence_symmetric_and_bounded():
    p, q = {"a": 5.0, "b": 1.0}, {"a": 1.0, "c": 2.0}

    assert js_divergence(p, q) == pytest.approx(js_divergence(q, p))
    assert 0.0 < js_divergence(p, q) < 1.0
    assert js_divergence(p, {"a": 10.0, "b": 2.0}) == pytest.approx(0.0)


def test_js_divergence_rejects_empty_distribution():
    with pytest.raises(ValueError, match="positive totals"):
        js_divergence({}, {"a": 1.0})


def test_published_alarm_matches_schema():
    import json
    from pathlib import Path

    import jsonschema

    schema_path = Path(__file__).resolve().parents[2] / "streams" / "schemas" / "drift_alarm.schema.json"
    schema = json.loads(schema_path.read_text())
    monitor = QualityDriftMonitor()
    rng = random.Random(0)
    alarms = []
    for index in range(6000):
        hit = 1.0 if rng.random() < (0.3 if index < 3000 else 0.05) else 0.0
        alarms += monitor.update_rank(hit, 1_700_000_000.0 + index)
    assert alarms
    record = {**alarms[0].to_dict(), "model_version": 3, "worker": "streamrank"}
    jsonschema.validate(json.loads(json.dumps(record)), schema)

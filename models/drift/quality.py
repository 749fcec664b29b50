"""Quality drift: ADWIN on the prequential reciprocal rank, Page-Hinkley on the training loss."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from river import drift

from models.drift.base import (
    DriftAlarm,
    _check_choice,
    _check_int,
    _check_open_unit,
    _check_real,
    _update_adwin,
)

__all__ = ["QualityDriftConfig", "QualityDriftMonitor"]


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

"""The drift alarm and the helpers every drift monitor shares."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from river import drift

__all__ = ["DriftAlarm"]


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

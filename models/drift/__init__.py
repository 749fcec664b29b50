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

from models.drift.base import DriftAlarm
from models.drift.inputs import InputDriftConfig, InputDriftMonitor, js_divergence
from models.drift.quality import QualityDriftConfig, QualityDriftMonitor

__all__ = [
    "DriftAlarm",
    "InputDriftConfig",
    "InputDriftMonitor",
    "QualityDriftConfig",
    "QualityDriftMonitor",
    "js_divergence",
]

"""The live monitor of a worker: Prometheus metrics, JSON APIs and the monitor page.

:func:`register` adds these GET routes to the Faust app's web server, which
binds to ``STREAMRANK_WEB_HOST``:``STREAMRANK_WEB_PORT`` (127.0.0.1:6066 by
default):

- ``/`` and ``/monitor/``: the monitor page, ``streams/web/monitor.html``; its
  script and style sheet are served from ``/monitor/monitor.js`` and
  ``/monitor/monitor.css``;
- ``/api/stats/``, ``/api/timeline/``, ``/api/alarms/`` and
  ``/api/recommendations/{user_id}/``: JSON read from a :class:`MonitoringSource`;
- ``/metrics``: the Prometheus text format 0.0.4, collected at scrape time.

Metric names carry their unit (``_seconds``, ``_total``). JSON latency fields
are in milliseconds (``latency_ms_p50``), times are Unix seconds: ``wall`` is
the worker's clock and ``event_ts`` is stream time.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

__all__ = ["LatencyQuantiles", "LatencyRecorder", "MonitoringSource", "StatsCollector", "register"]

WEB_DIR = Path(__file__).resolve().parent / "web"
PAGE_FILE = "monitor.html"
# Files the page loads besides itself, with their content types.
ASSET_TYPES = {"monitor.js": "text/javascript", "monitor.css": "text/css"}

# Buckets of the event-to-recommendation latency histogram, in seconds.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The p50 and p95 that the page shows cover this much recent wall time.
LATENCY_WINDOW_S = 10.0
MAX_LATENCY_SAMPLES = 10_000

# The page polls every 2 s, so a cached copy is never what a reader wants.
NO_STORE = {"Cache-Control": "no-store"}

# Counters in the worker's stats: (stats key, metric name without `_total`, help).
COUNTERS = (
    ("events_valid", "streamrank_events_valid", "Valid events processed since the worker started."),
    ("events_duplicate", "streamrank_events_duplicate",
     "Redelivered events whose id was already in the user's sequence, so they were not appended again."),
    ("recommendations_published", "streamrank_recommendations_published",
     "Recommendations published to the recommendations topic."),
    ("recommendations_from_ranker", "streamrank_recommendations_from_ranker",
     "Recommendations scored by the sequential ranker rather than the popular-now fallback."),
    ("examples_queued", "streamrank_examples_queued", "Training examples queued for the trainer."),
    ("examples_dropped", "streamrank_examples_dropped",
     "Training examples dropped, oldest first, because training fell behind."),
    ("drift_alarms", "streamrank_drift_alarms", "Drift alarms raised by the detectors."),
)
# Gauges in the worker's stats: (stats key, metric name, help).
GAUGES = (
    ("ready", "streamrank_ready", "1 once partitions are assigned and tables are recovered, else 0."),
    ("events_per_s", "streamrank_events_per_second", "Events taken from the events topic per second, valid or not."),
    ("examples_per_s", "streamrank_examples_per_second", "Training examples learned per second."),
    ("consumer_lag", "streamrank_consumer_lag_messages",
     "Messages of the events topic not yet read by this worker, over its partitions."),
    ("pending_examples", "streamrank_pending_examples", "Training examples waiting for the next micro-batch."),
    ("items", "streamrank_items", "Items in the item vocabulary."),
    ("model_version", "streamrank_model_version", "Optimizer steps of the serving snapshot; 0 before training."),
    ("model_age_s", "streamrank_model_age_seconds", "Seconds since the serving snapshot was replaced."),
    ("last_loss", "streamrank_training_loss", "Loss of the last training micro-batch."),
    ("hr_at_10", "streamrank_hr_at_10", "Rolling HR@10 of the published lists against the events that followed."),
    ("ndcg_at_10", "streamrank_ndcg_at_10",
     "Rolling NDCG@10 of the published lists against the events that followed."),
    ("uptime_s", "streamrank_uptime_seconds", "Seconds since the worker started."),
)


class MonitoringSource(Protocol):
    """Read-only view of a worker that the monitor serves. :class:`streams.app.Worker` implements it."""

    def stats(self) -> dict[str, Any]:
        """Counters and gauges now, keyed as in :data:`COUNTERS` and :data:`GAUGES`, plus
        ``events_invalid`` and ``invalid_by_field`` (field → count)."""

    def timeline(self) -> list[dict[str, Any]]:
        """At most 500 points, oldest first, about one per second of wall time while events flow."""

    def alarms(self) -> list[dict[str, Any]]:
        """Drift alarms, newest last."""

    def recommendation(self, user_id: str) -> dict[str, Any] | None:
        """Return the latest recommendation published for ``user_id``, or None when there is none."""


class LatencyQuantiles(NamedTuple):
    """p50 and p95 of the recent latencies in seconds, both None when there are no samples."""

    p50_s: float | None
    p95_s: float | None
    n_samples: int


class LatencyRecorder:
    """Event-to-recommendation latency: a Prometheus histogram plus the quantiles of a recent window.

    The histogram ``streamrank_recommendation_latency_seconds`` is in no
    registry until :func:`register` puts it in that app's own registry, so
    several workers in one process do not clash. ``window_s`` is wall time,
    measured with ``clock`` (seconds); at most ``max_samples`` are kept.

    >>> now = [100.0]
    >>> latency = LatencyRecorder(window_s=10.0, clock=lambda: now[0])
    >>> for seconds in (0.010, 0.020, 0.030, 0.040):
    ...     latency.observe(seconds)
    >>> latency.quantiles()
    LatencyQuantiles(p50_s=0.02, p95_s=0.04, n_samples=4)
    >>> now[0] = 111.0
    >>> latency.quantiles()
    LatencyQuantiles(p50_s=None, p95_s=None, n_samples=0)
    """

    def __init__(
        self,
        window_s: float = LATENCY_WINDOW_S,
        max_samples: int = MAX_LATENCY_SAMPLES,
        buckets_s: Sequence[float] = LATENCY_BUCKETS_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not window_s > 0:
            raise ValueError(f"invalid window_s {window_s!r}: expected a positive number of seconds")
        if max_samples < 1:
            raise ValueError(f"invalid max_samples {max_samples!r}: expected at least 1")
        self.window_s = window_s
        self.histogram = Histogram(
            "streamrank_recommendation_latency_seconds",
            "Seconds from an event's arrival at the worker to the publication of its recommendation.",
            buckets=tuple(buckets_s),
            registry=None,
        )
        self._clock = clock
        self._recent: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def observe(self, seconds: float) -> None:
        """Record one latency in seconds. A negative one counts as 0, and NaN or inf raises ValueError."""
        if not math.isfinite(seconds):
            raise ValueError(f"invalid latency {seconds!r} s: expected a finite number")
        # NOTE: a negative latency means the two timestamps came from clocks that disagree.
        seconds = max(seconds, 0.0)
        self.histogram.observe(seconds)
        now = self._clock()
        self._recent.append((now, seconds))
        self._forget_before(now - self.window_s)

    def quantiles(self) -> LatencyQuantiles:
        """Return the nearest-rank p50 and p95 of the latencies observed in the last ``window_s``."""
        self._forget_before(self._clock() - self.window_s)
        values = sorted(seconds for _, seconds in self._recent)
        if not values:
            return LatencyQuantiles(None, None, 0)
        return LatencyQuantiles(_nearest_rank(values, 0.5), _nearest_rank(values, 0.95), len(values))

    def _forget_before(self, cutoff: float) -> None:
        recent = self._recent
        while recent and recent[0][0] < cutoff:
            recent.popleft()


class StatsCollector:
    """A Prometheus collector that reads ``source.stats()`` at each scrape.

    A stats key that is missing or None gives a metric family with no sample,
    for example the consumer lag before partitions are assigned.
    """

    def __init__(self, source: MonitoringSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        stats = self.source.stats()
        for key, name, documentation in COUNTERS:
            counter = CounterMetricFamily(name, documentation)
            if stats.get(key) is not None:
                counter.add_metric([], float(stats[key]))
            yield counter

        invalid = CounterMetricFamily(
            "streamrank_events_invalid",
            "Invalid events sent to the dead-letter topic, by the field that failed validation.",
            labels=["field"],
        )
        for field_name, count in sorted((stats.get("invalid_by_field") or {}).items()):
            invalid.add_metric([field_name], float(count))
        yield invalid

        for key, name, documentation in GAUGES:
            gauge = GaugeMetricFamily(name, documentation)
            if stats.get(key) is not None:
                gauge.add_metric([], float(stats[key]))
            yield gauge


def register(app: faust.App, source: MonitoringSource, latency: LatencyRecorder) -> None:
    """Add the monitor's routes to ``app``'s web server, reading ``source`` and ``latency`` per request.

    Call it before the worker starts. The page files are read now, so a
    missing file raises FileNotFoundError here rather than on the first request.
    """
    registry = CollectorRegistry()
    registry.register(StatsCollector(source))
    registry.register(latency.histogram)
    page = (WEB_DIR / PAGE_FILE).read_text(encoding="utf-8")
    assets = {name: (WEB_DIR / name).read_text(encoding="utf-8") for name in ASSET_TYPES}

    routes: list[tuple[str, str, type[View]]] = [
        # NOTE: Faust also serves its own index at "/" (JSON status or sensor
        # statistics). aiohttp routes a request to the first matching route,
        # and this one is added before Faust applies its blueprints at server start.
        ("/", "monitor_index", _page_view(page)),
        ("/monitor/", "monitor_page", _page_view(page)),
        ("/monitor/{name}", "monitor_asset", _asset_view(assets)),
        ("/metrics", "monitor_metrics", _metrics_view(registry)),
        ("/api/stats/", "monitor_api_stats", _stats_view(source, latency)),
        ("/api/timeline/", "monitor_api_timeline", _json_view(source.timeline)),
        ("/api/alarms/", "monitor_api_alarms", _json_view(source.alarms)),
        ("/api/recommendations/{user_id}/", "monitor_api_recommendation", _recommendation_view(source)),
    ]
    for path, name, view in routes:
        app.page(path, name=name)(view)


def _page_view(page: str) -> type[View]:
    class MonitorPage(View):
        async def get(self, request: Request) -> Response:
            return self.html(page, headers={"Cache-Control": "no-cache"})

    return MonitorPage


def _asset_view(assets: dict[str, str]) -> type[View]:
    class MonitorAsset(View):
        async def get(self, request: Request, name: str) -> Response:
            if name not in assets:
                return self.json({"error": f"no monitor file {name!r}: expected one of {sorted(assets)}"}, status=404)
            return self.text(assets[name], content_type=ASSET_TYPES[name], headers={"Cache-Control": "no-cache"})

    return MonitorAsset


def _metrics_view(registry: CollectorRegistry) -> type[View]:
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            # The content type carries its charset, which aiohttp accepts only in the headers.
            return self.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    return Metrics


def _stats_view(source: MonitoringSource, latency: LatencyRecorder) -> type[View]:
    class Stats(View):
        async def get(self, request: Request) -> Response:
            quantiles = latency.quantiles()
            stats = {
                **source.stats(),
                "latency_ms_p50": _to_ms(quantiles.p50_s),
                "latency_ms_p95": _to_ms(quantiles.p95_s),
            }
            return self.json(_finite(stats), headers=NO_STORE)

    return Stats


def _json_view(read: Callable[[], Any]) -> type[View]:
    class SourceJson(View):
        async def get(self, request: Request) -> Response:
            return self.json(_finite(read()), headers=NO_STORE)

    return SourceJson


def _recommendation_view(source: MonitoringSource) -> type[View]:
    class Recommendation(View):
        async def get(self, request: Request, user_id: str) -> Response:
            recommendation = source.recommendation(user_id)
            if recommendation is None:
                message = (
                    f"no recommendation published for user {user_id!r} on this worker: "
                    "check the user id, or ask the worker that owns the user's partition"
                )
                return self.json({"error": message, "user_id": user_id}, status=404, headers=NO_STORE)
            return self.json(_finite(recommendation), headers=NO_STORE)

    return Recommendation


def _finite(value: Any) -> Any:
    """Return ``value`` with NaN and infinities replaced by None, since JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _nearest_rank(sorted_values: list[float], quantile: float) -> float:
    index = max(math.ceil(quantile * len(sorted_values)) - 1, 0)
    return sorted_values[index]

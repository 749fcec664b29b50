"""The monitor's routes on a real Faust app's aiohttp server, fed by a fake source."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import faust
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from streams.monitoring import WEB_DIR, LatencyQuantiles, LatencyRecorder, register

STATS = {
    "ready": True,
    "events_valid": 1200,
    "events_invalid": 3,
    "invalid_by_field": {"ts": 2, "key": 1},
    "events_duplicate": 4,
    "recommendations_published": 1200,
    "recommendations_from_ranker": 900,
    "events_per_s": 250.5,
    "model_version": 17,
    "items": 340,
    "examples_queued": 1100,
    "examples_dropped": 5,
    "pending_examples": 12,
    "last_loss": 4.25,
    "uptime_s": 30.0,
    "model_age_s": 0.8,
    "examples_per_s": 180.0,
    "consumer_lag": None,
    "drift_alarms": 2,
    "hr_at_10": 0.25,
    "ndcg_at_10": 0.125,
}
TIMELINE = [
    {"wall": 1_764_870_000.0 + i, "event_ts": 1_700_000_000.0 + 60 * i, "events_per_s": 200.0 + i,
     "latency_ms_p50": 8.0, "latency_ms_p95": 20.0, "loss": None if i == 0 else 5.0 - i / 10,
     "hr_at_10": 0.1 + i / 100, "ndcg_at_10": 0.05 + i / 200, "model_version": i}
    for i in range(5)
]
ALARMS = [{
    "detector": "ADWIN", "signal": "hr_at_10", "event_ts": 1_700_000_120.0, "model_version": 2,
    "before": {"hr_at_10": 0.3}, "after": {"hr_at_10": 0.1}, "value": 0.2, "threshold": 0.05,
}]
RECOMMENDATION = {
    "user_id": "u 7/é", "model_version": 17, "source": "ranker", "event_id": "e-9", "ts": 1_700_000_240.0,
    "published_at": 1_764_870_004.5,
    "items": [
        {"item_id": "i3", "score": 2.5, "reason": {"kind": "sequence", "text": "often follows i2", "items": ["i2"]}},
        {"item_id": "i8", "score": 1.75, "reason": {"kind": "popular", "text": "popular now", "items": []}},
    ],
}


@dataclass
class FakeSource:
    stats_values: dict[str, Any] = field(default_factory=lambda: dict(STATS))
    points: list[dict[str, Any]] = field(default_factory=lambda: list(TIMELINE))
    alarm_list: list[dict[str, Any]] = field(default_factory=lambda: list(ALARMS))
    recommendations: dict[str, dict[str, Any]] = field(default_factory=lambda: {"u 7/é": RECOMMENDATION})

    def stats(self) -> dict[str, Any]:
        return self.stats_values

    def timeline(self) -> list[dict[str, Any]]:
        return self.points

    def alarms(self) -> list[dict[str, Any]]:
        return self.alarm_list

    def recommendation(self, user_id: str) -> dict[str, Any] | None:
        return self.recommendations.get(user_id)


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def get(source: FakeSource, *paths: str, latency: LatencyRecorder | None = None, **app_options: Any) -> list[Reply]:
    """GET ``paths`` from a Faust app with the monitor registered, served by aiohttp's test server."""

    async def run() -> list[Reply]:
        app = make_app(**app_options)
        register(app, source, latency or LatencyRecorder())
        app.web.init_server()
        replies = []
        async with TestClient(TestServer(app.web.web_app)) as client:
            for path in paths:
                response = await client.get(path)
                replies.append(Reply(response.status, response.headers["Content-Type"],
                                     dict(response.headers), await response.text()))
        return replies

    return asyncio.run(run())


def make_app(**options: Any) -> faust.App:
    # No broker is contacted: only the web server's routes are built.
    return faust.App("monitor-test-" + uuid.uuid4().hex[:8], broker="kafka://127.0.0.1:1", web_enabled=True, **options)


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample_value(family: Any, name: str, **labels: str) -> float:
    matches = [s.value for s in family.samples if s.name == name and s.labels == labels]
    assert len(matches) == 1, f"expected one sample {name}{labels}, got {family.samples}"
    return matches[0]


# ---- /metrics ------------------------------------------------------------------------------


def test_metrics_content_type_is_text_0_0_4():
    (reply,) = get(FakeSource(), "/metrics")

    assert reply.status == 200
    assert reply.content_type.startswith("text/plain; version=0.0.4")


def test_metrics_counters_read_stats():
    (reply,) = get(FakeSource(), "/metrics")
    parsed = families(reply.text)

    expected = {
        "streamrank_events_valid": 1200, "streamrank_events_duplicate": 4,
        "streamrank_recommendations_published": 1200, "streamrank_recommendations_from_ranker": 900,
        "streamrank_examples_queued": 1100, "streamrank_examples_dropped": 5, "streamrank_drift_alarms": 2,
    }
    for name, value in expected.items():
        assert parsed[name].type == "counter", name
        assert sample_value(parsed[name], name + "_total") == value, name


def test_metrics_invalid_events_by_field():
    (reply,) = get(FakeSource(), "/metrics")
    invalid = families(reply.text)["streamrank_events_invalid"]

    assert invalid.type == "counter"
    assert sample_value(invalid, "streamrank_events_invalid_total", field="ts") == 2
    assert sample_value(invalid, "streamrank_events_invalid_total", field="key") == 1


def test_metrics_gauges_read_stats():
    (reply,) = get(FakeSource(), "/metrics")
    parsed = families(reply.text)

    expected = {
        "streamrank_ready": 1.0, "streamrank_events_per_second": 250.5, "streamrank_examples_per_second": 180.0,
        "streamrank_pending_examples": 12, "streamrank_items": 340, "streamrank_model_version": 17,
        "streamrank_model_age_seconds": 0.8, "streamrank_training_loss": 4.25, "streamrank_hr_at_10": 0.25,
        "streamrank_ndcg_at_10": 0.125, "streamrank_uptime_seconds": 30.0,
    }
    for name, value in expected.items():
        assert parsed[name].type == "gauge", name
        assert sample_value(parsed[name], name) == value, name


def test_metrics_unknown_value_has_no_sample():
    (reply,) = get(FakeSource(), "/metrics")
    lag = families(reply.text)["streamrank_consumer_lag_messages"]

    assert lag.type == "gauge"
    assert lag.samples == []


def test_metrics_work_with_original_stats_keys():
    original = {key: STATS[key] for key in (
        "ready", "events_valid", "events_invalid", "invalid_by_field", "events_duplicate",
        "recommendations_published", "recommendations_from_ranker", "events_per_s", "model_version", "items",
        "examples_queued", "examples_dropped", "pending_examples", "last_loss", "uptime_s",
    )}
    (reply,) = get(FakeSource(stats_values=original), "/metrics")
    parsed = families(reply.text)

    assert reply.status == 200
    assert sample_value(parsed["streamrank_events_valid"], "streamrank_events_valid_total") == 1200
    assert parsed["streamrank_model_age_seconds"].samples == []
    assert parsed["streamrank_drift_alarms"].samples == []


def test_metrics_latency_histogram():
    latency = LatencyRecorder()
    for seconds in (0.004, 0.008, 0.2):
        latency.observe(seconds)
    (reply,) = get(FakeSource(), "/metrics", latency=latency)
    histogram = families(reply.text)["streamrank_recommendation_latency_seconds"]

    assert histogram.type == "histogram"
    assert sample_value(histogram, "streamrank_recommendation_latency_seconds_count") == 3
    assert sample_value(histogram, "streamrank_recommendation_latency_seconds_sum") == pytest.approx(0.212)
    assert sample_value(histogram, "streamrank_recommendation_latency_seconds_bucket", le="0.005") == 1
    assert sample_value(histogram, "streamrank_recommendation_latency_seconds_bucket", le="0.01") == 2
    assert sample_value(histogram, "streamrank_recommendation_latency_seconds_bucket", le="+Inf") == 3


def test_metrics_separate_per_app():
    first, second = LatencyRecorder(), LatencyRecorder()
    first.observe(0.01)

    (first_reply,) = get(FakeSource(), "/metrics", latency=first)
    (second_reply,) = get(FakeSource(), "/metrics", latency=second)

    count = "streamrank_recommendation_latency_seconds_count"
    assert sample_value(families(first_reply.text)["streamrank_recommendation_latency_seconds"], count) == 1
    assert sample_value(families(second_reply.text)["streamrank_recommendation_latency_seconds"], count) == 0


# ---- JSON routes ---------------------------------------------------------------------------


def test_api_stats_adds_latency_ms():
    latency = LatencyRecorder()
    for seconds in (0.010, 0.020, 0.030, 0.040):
        latency.observe(seconds)
    (reply,) = get(FakeSource(), "/api/stats/", latency=latency)
    body = reply.json()

    assert reply.status == 200
    assert reply.content_type.startswith("application/json")
    assert reply.headers["Cache-Control"] == "no-store"
    assert {key: body[key] for key in STATS} == STATS
    assert body["latency_ms_p50"] == 20.0
    assert body["latency_ms_p95"] == 40.0


def test_api_stats_latency_null_without_samples():
    (reply,) = get(FakeSource(), "/api/stats/")

    assert reply.json()["latency_ms_p50"] is None
    assert reply.json()["latency_ms_p95"] is None


def test_api_timeline_and_alarms_return_source_data():
    timeline, alarms = get(FakeSource(), "/api/timeline/", "/api/alarms/")

    assert timeline.status == 200
    assert timeline.json() == TIMELINE
    assert alarms.status == 200
    assert alarms.json() == ALARMS


def test_api_nonfinite_numbers_become_null():
    source = FakeSource(points=[{"wall": 1.0, "event_ts": 2.0, "loss": math.nan, "hr_at_10": math.inf}])
    source.stats_values = {**STATS, "last_loss": math.nan}

    timeline, stats = get(source, "/api/timeline/", "/api/stats/")

    assert timeline.json() == [{"wall": 1.0, "event_ts": 2.0, "loss": None, "hr_at_10": None}]
    assert stats.json()["last_loss"] is None


def test_api_recommendation_known_user():
    (reply,) = get(FakeSource(), "/api/recommendations/u%207%2F%C3%A9/")

    assert reply.status == 200
    assert reply.json() == RECOMMENDATION


def test_api_recommendation_unknown_user_404():
    (reply,) = get(FakeSource(), "/api/recommendations/nobody/")
    body = reply.json()

    assert reply.status == 404
    assert reply.content_type.startswith("application/json")
    assert body["user_id"] == "nobody"
    assert "no recommendation published for user 'nobody'" in body["error"]


# ---- the page ------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"web_stats_enabled": True}], ids=["production", "stats"])
def test_page_served_at_root_and_monitor(options):
    root, monitor = get(FakeSource(), "/", "/monitor/", **options)

    assert root.status == 200
    assert root.content_type.startswith("text/html")
    assert "<title>streamrank monitor</title>" in root.text
    assert monitor.text == root.text


def test_page_links_script_style_and_apis():
    page, script, style = get(FakeSource(), "/monitor/", "/monitor/monitor.js", "/monitor/monitor.css")

    assert 'src="/monitor/monitor.js"' in page.text
    assert 'href="/monitor/monitor.css"' in page.text
    assert script.status == 200
    assert script.content_type.startswith("text/javascript")
    assert style.status == 200
    assert style.content_type.startswith("text/css")
    for path in ("/api/stats/", "/api/timeline/", "/api/alarms/", "/api/recommendations/"):
        assert path in script.text, path
    assert script.text == (WEB_DIR / "monitor.js").read_text(encoding="utf-8")


def test_page_has_no_external_resources():
    for name in ("monitor.html", "monitor.js", "monitor.css"):
        text = (WEB_DIR / name).read_text(encoding="utf-8")
        for pattern in ('src="http', "src='http", 'href="http', "@import", "url(http", "//cdn"):
            assert pattern not in text, f"{name} loads an external resource: {pattern}"


def test_asset_unknown_name_404():
    (reply,) = get(FakeSource(), "/monitor/secrets.txt")

    assert reply.status == 404
    assert "no monitor file 'secrets.txt'" in reply.json()["error"]


# ---- LatencyRecorder -----------------------------------------------------------------------


def test_latency_quantiles_nearest_rank():
    latency = LatencyRecorder(clock=lambda: 0.0)
    for millis in range(1, 101):
        latency.observe(millis / 1000)

    assert latency.quantiles() == LatencyQuantiles(p50_s=0.05, p95_s=0.095, n_samples=100)


def test_latency_quantiles_forget_old_samples():
    now = [0.0]
    latency = LatencyRecorder(window_s=5.0, clock=lambda: now[0])
    latency.observe(1.0)
    now[0] = 4.0
    latency.observe(0.002)
    now[0] = 5.5

    assert latency.quantiles() == LatencyQuantiles(p50_s=0.002, p95_s=0.002, n_samples=1)


def test_latency_window_keeps_max_samples():
    latency = LatencyRecorder(max_samples=3, clock=lambda: 0.0)
    for seconds in (9.0, 0.1, 0.2, 0.3):
        latency.observe(seconds)

    assert latency.quantiles().n_samples == 3
    assert latency.quantiles().p95_s == 0.3


def test_latency_negative_counts_as_zero():
    latency = LatencyRecorder(clock=lambda: 0.0)
    latency.observe(-0.5)

    assert latency.quantiles().p50_s == 0.0
    samples = {sample.name: sample.value for sample in latency.histogram.collect()[0].samples}
    assert samples["streamrank_recommendation_latency_seconds_sum"] == 0.0


@pytest.mark.parametrize("seconds", [math.nan, math.inf])
def test_latency_nonfinite_raises(seconds):
    with pytest.raises(ValueError, match="invalid latency"):
        LatencyRecorder().observe(seconds)


@pytest.mark.parametrize(("options", "message"), [
    ({"window_s": 0.0}, "invalid window_s 0.0"),
    ({"max_samples": 0}, "invalid max_samples 0"),
])
def test_latency_recorder_rejects_bad_settings(options, message):
    with pytest.raises(ValueError, match=message):
        LatencyRecorder(**options)

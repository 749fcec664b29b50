"""The monitor page in headless Chromium: charts drawn, alarms marked, the user lookup filled.

One test serves the page from a Faust app's web server fed by a seeded fake
source, so it needs no broker. The other replays a synthetic stream into a
real worker on the local broker. Both drive Debian's ``/usr/bin/chromium``
with Playwright (the PyPI wheel, no downloaded browser), or with
``chromium --dump-dom`` when Playwright is not installed.

Set ``STREAMRANK_MONITOR_SCREENSHOT=PATH`` to also save the fake-source page's
screenshot there, as for ``docs/img/monitor.png``.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import faust
import pytest
from aiohttp import web

from streams.monitoring import LatencyRecorder, register
from streams.replay import replay_events
from streams.synthetic import SyntheticConfig, generate

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
CHART_IDS = ("chart-quality", "chart-loss", "chart-throughput", "chart-latency")
SCREENSHOT_ENV = "STREAMRANK_MONITOR_SCREENSHOT"
PAGE_TIMEOUT_MS = 30_000
INSTALL_TIMEOUT_S = 900


# ---- a seeded fake worker ------------------------------------------------------------------


class FakeWorker:
    """A MonitoringSource with a seeded history: quality that rises, drops at a drift alarm and recovers.

    Wall time ends now, one point per second. Stream time moves 120 s per
    point, as in a replay at 120 times real time.
    """

    N_POINTS = 240
    DRIFT_AT = 150
    START_TS = 1_700_000_000.0

    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)
        now = time.time()
        self.points = [self._point(i, now - (self.N_POINTS - 1 - i), rng) for i in range(self.N_POINTS)]
        at = self.points
        self.alarm_list = [
            self._alarm("KSWIN", "item_popularity", at[62], {"top_100_share": 0.41}, {"top_100_share": 0.33}, 0.27, 0.2),
            self._alarm("ADWIN", "hr_at_10", at[self.DRIFT_AT + 3], {"hr_at_10": 0.312}, {"hr_at_10": 0.187}, 0.125, 0.08),
            self._alarm("PageHinkley", "loss", at[self.DRIFT_AT + 8], {"loss": 4.02}, {"loss": 4.71}, 61.3, 50.0),
        ]
        self.recommendations = {"u42": self._recommendation(at[-1], now)}

    def _point(self, i: int, wall: float, rng: random.Random) -> dict[str, Any]:
        learned = 1 - math.exp(-i / 45)
        drop = 0.0 if i < self.DRIFT_AT else 0.14 * math.exp(-(i - self.DRIFT_AT) / 30)
        hr = 0.04 + 0.28 * learned - drop + rng.gauss(0, 0.006)
        loss = 3.9 + 2.9 * (1 - learned) + (4.5 * drop) + rng.gauss(0, 0.05)
        return {
            "wall": wall,
            "event_ts": self.START_TS + 120.0 * i,
            "events_per_s": 850 + 60 * math.sin(i / 17) + rng.gauss(0, 25),
            "latency_ms_p50": 8.5 + rng.gauss(0, 0.6) + (3.0 if self.DRIFT_AT <= i < self.DRIFT_AT + 10 else 0.0),
            "latency_ms_p95": 24 + rng.gauss(0, 1.5) + (9.0 if self.DRIFT_AT <= i < self.DRIFT_AT + 10 else 0.0),
            "loss": None if i < 8 else loss,
            "hr_at_10": None if i < 5 else hr,
            "ndcg_at_10": None if i < 5 else 0.56 * hr + rng.gauss(0, 0.004),
            "model_version": max(0, 4 * (i - 8)),
        }

    @staticmethod
    def _alarm(detector: str, signal: str, point: dict[str, Any], before: dict[str, float], after: dict[str, float],
               value: float, threshold: float) -> dict[str, Any]:
        return {"detector": detector, "signal": signal, "event_ts": point["event_ts"],
                "model_version": point["model_version"], "before": before, "after": after,
                "value": value, "threshold": threshold}

    @staticmethod
    def _recommendation(point: dict[str, Any], now: float) -> dict[str, Any]:
        reasons = [
            ("sequence", "often viewed right after i1207, which you viewed last", ["i1207"]),
            ("sequence", "next in the series you have been browsing (c3)", ["i1207", "i1206"]),
            ("cluster", "similar to i88, which you added to your cart", ["i88"]),
            ("popular", "popular in the last hour", []),
        ]
        items = []
        for rank in range(10):
            kind, text, related = reasons[min(rank // 3, 3)]
            items.append({"item_id": f"i{1208 + 7 * rank}", "score": round(3.4 - 0.23 * rank - 0.01 * rank**2, 4),
                          "reason": {"kind": kind, "text": text, "items": related}})
        return {"user_id": "u42", "items": items, "model_version": point["model_version"], "source": "ranker",
                "event_id": "e-88213", "ts": point["event_ts"] - 14.0, "published_at": now - 2.0}

    def stats(self) -> dict[str, Any]:
        last = self.points[-1]
        return {
            "ready": True, "events_valid": 196_420, "events_invalid": 8, "invalid_by_field": {"ts": 5, "key": 3},
            "events_duplicate": 12, "recommendations_published": 196_420, "recommendations_from_ranker": 191_077,
            "events_per_s": last["events_per_s"], "model_version": last["model_version"], "items": 1_984,
            "examples_queued": 190_300, "examples_dropped": 0, "pending_examples": 41, "last_loss": last["loss"],
            "uptime_s": 251.0, "model_age_s": 0.4, "examples_per_s": 760.0, "consumer_lag": 1_210,
            "drift_alarms": len(self.alarm_list), "hr_at_10": last["hr_at_10"], "ndcg_at_10": last["ndcg_at_10"],
        }

    def timeline(self) -> list[dict[str, Any]]:
        return self.points

    def alarms(self) -> list[dict[str, Any]]:
        return self.alarm_list

    def recommendation(self, user_id: str) -> dict[str, Any] | None:
        return self.recommendations.get(user_id)


@dataclass
class MonitorServer:
    """The routes of :func:`register` on a Faust app's aiohttp application, served from a thread."""

    port: int
    stop: threading.Event
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def fake_monitor() -> Iterator[MonitorServer]:
    app = faust.App("monitor-page-" + uuid.uuid4().hex[:8], broker="kafka://127.0.0.1:1", web_enabled=True)
    latency = LatencyRecorder()
    rng = random.Random(3)
    for _ in range(500):
        latency.observe(rng.lognormvariate(math.log(0.009), 0.5))
    register(app, FakeWorker(), latency)
    port = _free_port()
    started, stop = threading.Event(), threading.Event()

    async def serve() -> None:
        app.web.init_server()
        runner = web.AppRunner(app.web.web_app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        started.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="monitor-server", daemon=True)
    thread.start()
    assert started.wait(10), "the fake monitor server did not start within 10 s"
    yield MonitorServer(port, stop, thread)
    stop.set()
    thread.join(10)


# ---- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium, installed with deploy/install-chromium.sh when missing and this runs as root."""
    if not CHROMIUM.exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        result = subprocess.run([str(REPO / "deploy" / "install-chromium.sh")], capture_output=True, text=True,
                                timeout=INSTALL_TIMEOUT_S, check=False)
        if result.returncode != 0:
            pytest.skip(f"{CHROMIUM} is missing and deploy/install-chromium.sh failed:\n{result.stderr[-2000:]}")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: run deploy/install-chromium.sh as root to install Debian's chromium")
    return CHROMIUM


@dataclass
class PageView:
    """What the browser saw after the page drew its data."""

    chart_points: dict[str, int]
    chart_paths: dict[str, int]
    alarm_markers: int
    alarm_rows: int
    state: str
    item_ids: list[str]
    reasons: list[str]
    lookup_status: str
    errors: list[str]


@contextmanager
def browser_page(chromium: Path, tmp_path: Path) -> Iterator[tuple[Any, list[str]]]:
    """Yield a Playwright page in headless Chromium and the list of errors it reports while open."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / f"chromium-{uuid.uuid4().hex[:8]}"), executable_path=str(chromium), headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1440, "height": 900}, device_scale_factor=1,
        )
        try:
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
            page.on("console", lambda message: errors.append(f"console {message.type}: {message.text}")
                    if message.type == "error" else None)
            page.on("request", lambda request: None if urlsplit(request.url).hostname == "127.0.0.1"
                    else errors.append(f"request to another host: {request.url}"))
            yield page, errors
        finally:
            context.close()


def open_page(chromium: Path, url: str, tmp_path: Path, screenshot: Path, min_items: int = 1) -> PageView:
    """Load ``url`` in headless Chromium, wait for charts and the user lookup, and save a screenshot."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return _open_with_dump_dom(chromium, url, tmp_path, screenshot)

    with browser_page(chromium, tmp_path) as (page, errors):
        page.goto(url)
        page.wait_for_function(
            """(minItems) => document.querySelectorAll('#recommendation .rec-item').length >= minItems
               && ['chart-quality', 'chart-throughput'].every((id) => Number(document.getElementById(id).dataset.points) > 0)""",
            arg=min_items, timeout=PAGE_TIMEOUT_MS,
        )
        page.screenshot(path=str(screenshot), full_page=True)
        view = page.evaluate(
            """(chartIds) => ({
                chart_points: Object.fromEntries(chartIds.map((id) => [id, Number(document.getElementById(id).dataset.points)])),
                chart_paths: Object.fromEntries(chartIds.map((id) => [id,
                    [...document.querySelectorAll('#' + id + ' path.series')].filter((p) => p.getAttribute('d').length > 0).length])),
                alarm_markers: Number(document.getElementById('chart-quality').dataset.alarms),
                alarm_rows: document.querySelectorAll('#alarms-body td.detector').length,
                state: document.getElementById('state').textContent,
                item_ids: [...document.querySelectorAll('#recommendation .rec-item-id')].map((n) => n.textContent),
                reasons: [...document.querySelectorAll('#recommendation .rec-reason')].map((n) => n.textContent),
                lookup_status: document.getElementById('lookup-status').textContent,
            })""",
            list(CHART_IDS),
        )
        return PageView(errors=list(errors), **view)


def _open_with_dump_dom(chromium: Path, url: str, tmp_path: Path, screenshot: Path) -> PageView:
    base = [str(chromium), "--headless", *CHROMIUM_FLAGS, "--virtual-time-budget=10000", "--window-size=1440,2000"]
    dom = subprocess.run([*base, f"--user-data-dir={tmp_path / 'chromium-dom'}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    subprocess.run([*base, f"--user-data-dir={tmp_path / 'chromium-shot'}", f"--screenshot={screenshot}", url],
                   capture_output=True, timeout=120, check=True)

    def chart(chart_id: str) -> str:
        match = re.search(rf'<svg id="{chart_id}".*?</svg>', dom, re.S)
        return match.group(0) if match else ""

    def attribute(text: str, name: str) -> int:
        match = re.search(rf'{name}="(\d+)"', text)
        return int(match.group(1)) if match else 0

    status = re.search(r'id="lookup-status"[^>]*>(.*?)</p>', dom, re.S)
    state = re.search(r'id="state"[^>]*>(.*?)</p>', dom, re.S)
    return PageView(
        chart_points={chart_id: attribute(chart(chart_id), "data-points") for chart_id in CHART_IDS},
        chart_paths={chart_id: len(re.findall(r'<path d="M[^"]+"[^>]*class="series"', chart(chart_id))) for chart_id in CHART_IDS},
        alarm_markers=attribute(chart("chart-quality"), "data-alarms"),
        alarm_rows=len(re.findall(r'<td class="detector">', dom)),
        state=state.group(1) if state else "",
        item_ids=re.findall(r'<span class="rec-item-id">(.*?)</span>', dom),
        reasons=[re.sub(r"<[^>]+>", "", reason) for reason in re.findall(r'<div class="rec-reason"[^>]*>(.*?)</div>', dom)],
        lookup_status=status.group(1) if status else "",
        errors=[],
    )


# ---- tests ---------------------------------------------------------------------------------


def test_monitor_page_fake_source(chromium, fake_monitor, tmp_path):
    source = FakeWorker()
    screenshot = tmp_path / "monitor.png"

    view = open_page(chromium, fake_monitor.url + "/monitor/?user=u42", tmp_path, screenshot, min_items=10)

    assert view.errors == []
    assert view.state == "ready"
    for chart_id in CHART_IDS:
        assert view.chart_points[chart_id] > 0, chart_id
        assert view.chart_paths[chart_id] >= 1, chart_id
    # HR@10 and NDCG@10 from point 5 on, one line each.
    assert view.chart_points["chart-quality"] == 2 * (FakeWorker.N_POINTS - 5)
    assert view.alarm_markers == len(source.alarms())
    assert view.alarm_rows == len(source.alarms())
    expected = source.recommendation("u42")
    assert view.item_ids == [item["item_id"] for item in expected["items"]]
    for reason, item in zip(view.reasons, expected["items"], strict=True):
        assert item["reason"]["text"] in reason
    assert "User u42: 10 items from the ranker" in view.lookup_status
    assert screenshot.stat().st_size > 10_000
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(screenshot, os.environ[SCREENSHOT_ENV])


def test_monitor_page_unknown_user(chromium, fake_monitor, tmp_path):
    pytest.importorskip("playwright", reason="typing into the page needs Playwright: pip install playwright")

    with browser_page(chromium, tmp_path) as (page, errors):
        page.goto(fake_monitor.url + "/monitor/")
        page.get_by_label("User id").fill("nobody")
        page.get_by_role("button", name="Show recommendations").click()
        page.wait_for_function("() => document.getElementById('lookup-status').classList.contains('error')",
                               timeout=PAGE_TIMEOUT_MS)
        status = page.text_content("#lookup-status") or ""
        n_items = page.locator("#recommendation li").count()
        url = page.url

    assert "no recommendation published for user 'nobody'" in status
    assert n_items == 0
    assert url.endswith("/monitor/?user=nobody")
    # The failed lookup's 404 is the only error the browser reports.
    assert [error for error in errors if "404" not in error] == []


def test_monitor_page_chart_tooltip(chromium, fake_monitor, tmp_path):
    pytest.importorskip("playwright", reason="hovering over a chart needs Playwright: pip install playwright")

    with browser_page(chromium, tmp_path) as (page, errors):
        page.goto(fake_monitor.url + "/monitor/")
        page.wait_for_function("() => Number(document.getElementById('chart-quality').dataset.points) > 0",
                               timeout=PAGE_TIMEOUT_MS)
        chart = page.locator("#chart-quality")
        box = chart.bounding_box()
        chart.hover(position={"x": box["width"] * 0.9, "y": box["height"] / 2})
        tooltip = page.locator("#chart-quality + .tooltip")
        tooltip_text = tooltip.text_content() or ""
        tooltip_visible = tooltip.is_visible()
        alarm_titles = page.locator("#chart-quality g.alarm title").all_text_contents()
        summary = chart.get_attribute("aria-label") or ""

    assert errors == []
    assert tooltip_visible
    assert "UTC" in tooltip_text
    assert "HR@10: 0." in tooltip_text
    assert "NDCG@10: 0." in tooltip_text
    assert any(title.startswith("Drift alarm: ADWIN on hr_at_10 at 2023-11-15") for title in alarm_titles), alarm_titles
    assert summary.startswith("Ranking quality over stream time, latest at 2023-11-15")
    assert "3 drift alarms in view" in summary


@pytest.mark.kafka
def test_monitor_page_live_worker(chromium, run_settings, worker, tmp_path):
    events = list(generate(SyntheticConfig(n_users=60, n_items=300, n_events=3000, seed=11)))
    worker.start()
    assert worker.get("/api/stats/") is not None, (
        "the worker serves no /api/stats/: Worker must call streams.monitoring.register on its app"
    )

    result = replay_events(run_settings, events, total=len(events), progress=False)
    stats: dict[str, Any] = {}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        stats = worker.get("/api/stats/") or stats
        if stats.get("recommendations_published", 0) >= len(events):
            break
        time.sleep(1)
    user_id = events[-1].user_id
    view = open_page(chromium, f"http://127.0.0.1:{run_settings.web_port}/monitor/?user={user_id}", tmp_path,
                     tmp_path / "monitor-live.png")

    assert result.n_sent == len(events)
    assert stats.get("recommendations_published", 0) >= len(events), stats
    assert view.errors == []
    assert view.state == "ready"
    for chart_id in ("chart-quality", "chart-throughput", "chart-latency"):
        assert view.chart_points[chart_id] > 0, chart_id
    assert 1 <= len(view.item_ids) <= run_settings.top_k
    assert len(view.reasons) == len(view.item_ids)
    assert all(reason and "no reason given" not in reason for reason in view.reasons), view.reasons


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

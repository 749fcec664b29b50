"""The end-to-end demo: broker, topics, a worker, a replay, live progress, a summary.

Each run uses its own topic prefix, consumer group and data folder
(``streamrank-demo-<time>``), so runs never see each other's events. The
demo also injects a few invalid messages and checks that every one of them
reaches the DLQ, and that every user with a valid event gets a recommendation.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer

from streams import broker
from streams.config import Settings
from streams.events import Event
from streams.replay import ReplayResult, make_producer, replay_events
from streams.topics import ensure_topics

__all__ = ["DemoOptions", "run_demo", "INVALID_MESSAGES"]

logger = logging.getLogger(__name__)

WORKER_START_TIMEOUT_S = 120.0
STATUS_INTERVAL_S = 2.0
SAMPLE_INTERVAL_S = 10.0

# (key, value) pairs that the worker must reject, one per kind of mistake.
INVALID_MESSAGES: list[tuple[bytes, bytes]] = [
    (b"demo-bad", b'{"event_id": "bad-1", "user_id": "demo-bad", "item_id": '),
    (b"demo-bad", b'{"event_id":"bad-2","user_id":"demo-bad","type":"view","ts":1700000000}'),
    (b"demo-bad", b'{"event_id":"bad-3","user_id":"demo-bad","item_id":"i1","type":"wishlist","ts":1700000000}'),
    (b"demo-bad", b'{"event_id":"bad-4","user_id":"demo-bad","item_id":"i1","type":"view","ts":NaN}'),
    (b"demo-bad", b'{"event_id":"bad-5","user_id":"demo-bad","item_id":"i1","type":"view","ts":1700000000000}'),
    (b"demo-bad", b'{"event_id":"bad-6","user_id":["demo-bad"],"item_id":"i1","type":"view","ts":1700000000}'),
    (b"someone-else", b'{"event_id":"bad-7","user_id":"demo-bad","item_id":"i1","type":"view","ts":1700000000}'),
    (b"demo-bad", b"\xff\xfe not utf-8"),
]


@dataclass(frozen=True)
class DemoOptions:
    drain_timeout_s: float = 180.0
    speed: float | None = None
    inject_invalid: bool = True
    keep_broker: bool = False


@dataclass
class _Tally:
    recommendations: int = 0
    dead_letters: int = 0
    users: set[str] = field(default_factory=set)
    event_ids: set[str] = field(default_factory=set)
    from_ranker: int = 0
    model_version: int = 0
    dlq_reasons: list[dict[str, Any]] = field(default_factory=list)
    latest: dict[str, Any] | None = None


def run_demo(settings: Settings, events: list[Event], options: DemoOptions) -> int:
    """Run the demo on ``events`` (already in event-time order); return the exit code.

    Exit code 0 means every valid event's user got a recommendation and every
    injected invalid message reached the DLQ.
    """
    run_id = time.strftime("streamrank-demo-%Y%m%d-%H%M%S")
    run_settings = settings.isolated(run_id, settings.data_dir / run_id)
    run_settings.data_dir.mkdir(parents=True, exist_ok=True)

    started_broker = _ensure_broker(settings)
    ensure_topics(run_settings)
    print(f"demo run {run_id}: {len(events):,} events, topics {run_id}.*, data {run_settings.data_dir}")

    worker = _start_worker(run_settings)
    try:
        _wait_for_worker(run_settings, worker)
        print(f"worker ready: watch it at http://{run_settings.web_host}:{run_settings.web_port}/ "
              f"(Prometheus metrics at /metrics)")
        summary = _replay_and_watch(run_settings, events, options, worker)
    finally:
        _stop_worker(worker)
        if started_broker and not options.keep_broker:
            broker.stop(settings)
            print("stopped the local Kafka broker that the demo started")

    summary_path = run_settings.data_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    _print_summary(summary, summary_path)
    return 0 if summary["ok"] else 1


def _ensure_broker(settings: Settings) -> bool:
    """Start the local broker when the settings point at it and it is down; return True if started."""
    if settings.bootstrap_list != [f"127.0.0.1:{settings.kafka_port}"]:
        return False
    if broker.status(settings).running or broker.reachable(settings):
        return False
    print("starting the local Kafka broker (first run fetches its jars with Maven)...")
    status = broker.start(settings)
    print(f"Kafka {status.describe()}")
    return True


def _start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings.to_env()}
    log_path = settings.data_dir / "worker.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - the worker process owns it until it exits
    print(f"starting worker (log {log_path})")
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker"],
        stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
    )


def _wait_for_worker(settings: Settings, worker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode}: "
                               f"read {settings.data_dir / 'worker.log'}")
        stats = worker_stats(settings)
        if stats is not None and stats["ready"]:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the worker did not respond on port {settings.web_port} within "
                       f"{WORKER_START_TIMEOUT_S:.0f} s: read {settings.data_dir / 'worker.log'}")


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def worker_stats(settings: Settings) -> dict[str, Any] | None:
    """Return the worker's /stats/ JSON, or None when it does not respond."""
    url = f"http://{settings.web_host}:{settings.web_port}/stats/"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _replay_and_watch(
    settings: Settings, events: list[Event], options: DemoOptions, worker: subprocess.Popen[bytes],
) -> dict[str, Any]:
    results: list[ReplayResult] = []
    injected = len(INVALID_MESSAGES) if options.inject_invalid else 0

    def produce() -> None:
        if injected:
            _send_invalid(settings)
        results.append(replay_events(settings, events, total=len(events), speed=options.speed, progress=False))

    sender = threading.Thread(target=produce, name="replay", daemon=True)
    started = time.monotonic()
    sender.start()

    tally = _Tally()
    consumer = KafkaConsumer(
        settings.recommendations_topic, settings.dlq_topic,
        bootstrap_servers=settings.bootstrap_list, group_id=None,
        auto_offset_reset="earliest", enable_auto_commit=False,
    )
    valid_ids = {event.event_id for event in events}
    last_status = last_sample = last_progress = time.monotonic()
    last_count = 0
    try:
        while True:
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    _count(tally, record.topic, json.loads(record.value), settings)
            now = time.monotonic()
            done_sending = not sender.is_alive()
            processed = len(tally.event_ids) + tally.dead_letters
            if processed != last_count:
                last_count, last_progress = processed, now
            if now - last_status >= STATUS_INTERVAL_S:
                _print_status(tally, len(events), now - started, settings)
                last_status = now
            if now - last_sample >= SAMPLE_INTERVAL_S and tally.latest is not None:
                _print_sample(tally.latest)
                last_sample = now
            if done_sending and valid_ids <= tally.event_ids and tally.dead_letters >= injected:
                break
            if done_sending and now - last_progress > options.drain_timeout_s:
                print(f"no new output for {options.drain_timeout_s:.0f} s: stopping the wait")
                break
            if worker.poll() is not None:
                print(f"the worker exited with code {worker.returncode}: read {settings.data_dir / 'worker.log'}")
                break
    finally:
        consumer.close()
    sender.join(timeout=5)
    elapsed = time.monotonic() - started
    replay = results[0] if results else ReplayResult(0, 0, elapsed, "replay did not finish")
    return _summarize(tally, events, replay, injected, elapsed, settings, valid_ids)


def _send_invalid(settings: Settings) -> None:
    producer = make_producer(settings)
    try:
        for key, value in INVALID_MESSAGES:
            producer.send(settings.events_topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


def _count(tally: _Tally, topic: str, value: dict[str, Any], settings: Settings) -> None:
    if topic == settings.dlq_topic:
        tally.dead_letters += 1
        tally.dlq_reasons.append({"field": value["field"], "error": value["error"]})
        return
    tally.recommendations += 1
    tally.users.add(value["user_id"])
    tally.event_ids.add(value["event_id"])
    tally.model_version = max(tally.model_version, value["model_version"])
    if value["source"] == "ranker":
        tally.from_ranker += 1
        tally.latest = value


def _print_status(tally: _Tally, n_events: int, elapsed_s: float, settings: Settings) -> None:
    done = len(tally.event_ids)
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    eta = (n_events - done) / rate if rate > 0 else float("inf")
    stats = worker_stats(settings) or {}
    print(
        f"[{elapsed_s:6.0f} s] events processed {done:,}/{n_events:,} ({rate:,.0f}/s, ETA {eta:,.0f} s) | "
        f"recommendations {tally.recommendations:,} | DLQ {tally.dead_letters} | "
        f"model v{tally.model_version} loss {stats.get('last_loss')}",
        flush=True,
    )


def _print_sample(rec: dict[str, Any]) -> None:
    top = ", ".join(f"{item['item_id']} ({item['score']:.2f})" for item in rec["items"][:5])
    print(f"    fresh recommendation for user {rec['user_id']} (model v{rec['model_version']}): {top}", flush=True)


def _summarize(
    tally: _Tally, events: list[Event], replay: ReplayResult, injected: int,
    elapsed_s: float, settings: Settings, valid_ids: set[str],
) -> dict[str, Any]:
    users = {event.user_id for event in events}
    missing_users = sorted(users - tally.users)
    stats = worker_stats(settings) or {}
    summary = {
        "run": settings.app_id,
        "events_sent": replay.n_sent,
        "send_failures": replay.n_failed,
        "invalid_injected": injected,
        "dead_letters": tally.dead_letters,
        "dead_letter_fields": dict(Counter(reason["field"] for reason in tally.dlq_reasons)),
        "dead_letter_errors": [reason["error"] for reason in tally.dlq_reasons],
        "recommendations": tally.recommendations,
        "recommendations_from_ranker": tally.from_ranker,
        "events_with_recommendation": len(tally.event_ids & valid_ids),
        "events_without_recommendation": len(valid_ids - tally.event_ids),
        "duplicate_recommendations": tally.recommendations - len(tally.event_ids),
        "users_with_events": len(users),
        "users_with_recommendation": len(users & tally.users),
        "users_without_recommendation": missing_users[:20],
        "final_model_version": tally.model_version,
        "elapsed_s": round(elapsed_s, 1),
        "events_per_s": round(len(tally.event_ids) / elapsed_s, 1) if elapsed_s else 0.0,
        "worker": stats,
    }
    summary["ok"] = (
        replay.n_failed == 0
        and not missing_users
        and valid_ids <= tally.event_ids
        and tally.dead_letters == injected
    )
    return summary


def _print_summary(summary: dict[str, Any], path: Path) -> None:
    print()
    print("demo summary")
    print(f"  events sent:         {summary['events_sent']:,} in {summary['elapsed_s']} s "
          f"({summary['events_per_s']:,} processed/s)")
    print(f"  recommendations:     {summary['recommendations']:,} "
          f"({summary['recommendations_from_ranker']:,} from the ranker, final model v{summary['final_model_version']})")
    print(f"  users recommended:   {summary['users_with_recommendation']:,} of {summary['users_with_events']:,}")
    print(f"  events without one:  {summary['events_without_recommendation']:,} "
          f"(and {summary['duplicate_recommendations']:,} recommendations published twice)")
    print(f"  invalid messages:    {summary['invalid_injected']} injected, {summary['dead_letters']} in the DLQ")
    for error in summary["dead_letter_errors"][:10]:
        print(f"    - {error}")
    if summary["users_without_recommendation"]:
        print(f"  users without a recommendation (first 20): {summary['users_without_recommendation']}")
    print(f"  result: {'OK' if summary['ok'] else 'FAILED'} (details in {path})")

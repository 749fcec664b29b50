"""Produce events to the events topic with kafka-python, in event-time order.

Events are keyed by user id so that a user's events share a partition with
their sequence in the worker's table. ``speed`` replays at a multiple of real
time (``None`` means as fast as the broker takes them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaProducer
from tqdm import tqdm

from streams.config import Settings
from streams.events import Event

__all__ = ["ReplayResult", "make_producer", "replay_events"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayResult:
    n_sent: int
    n_failed: int
    elapsed_s: float
    first_error: str | None = None

    @property
    def events_per_s(self) -> float:
        return self.n_sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


def make_producer(settings: Settings) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=settings.bootstrap_list,
        acks="all",
        linger_ms=20,
        batch_size=256 * 1024,
        max_in_flight_requests_per_connection=1,  # keeps a user's events in order across retries
        retries=5,
    )


def replay_events(
    settings: Settings,
    events: Iterable[Event],
    *,
    total: int | None = None,
    speed: float | None = None,
    progress: bool = True,
    stop: threading.Event | None = None,
) -> ReplayResult:
    """Send ``events`` in the order given, then flush.

    Raises ``ValueError`` for a non-positive ``speed``. Send failures are
    counted and the first one is returned, not raised, so a long replay is not
    lost to one rejected message.
    """
    if speed is not None and not speed > 0:
        raise ValueError(f"speed must be positive or None for maximum speed, got {speed}")
    producer = make_producer(settings)
    failures: list[str] = []

    def on_error(exc: BaseException) -> None:
        failures.append(repr(exc))

    started = time.monotonic()
    first_ts: float | None = None
    n_sent = 0
    bar = tqdm(total=total, unit="event", desc="replay", disable=not progress, smoothing=0.1)
    try:
        for event in events:
            if stop is not None and stop.is_set():
                break
            if speed is not None:
                first_ts = event.ts if first_ts is None else first_ts
                delay = (event.ts - first_ts) / speed - (time.monotonic() - started)
                if delay > 0:
                    time.sleep(delay)
            future = producer.send(settings.events_topic, key=event.user_id.encode(), value=event.to_json())
            future.add_errback(on_error)
            n_sent += 1
            bar.update(1)
        producer.flush()
    finally:
        bar.close()
        producer.close()
    elapsed = time.monotonic() - started
    if failures:
        logger.error("replay could not send %d of %d events; first error: %s", len(failures), n_sent, failures[0])
    return ReplayResult(n_sent - len(failures), len(failures), elapsed, failures[0] if failures else None)

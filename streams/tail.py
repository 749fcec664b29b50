"""Read a topic and print its messages as JSON lines."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from kafka import KafkaConsumer
from kafka.errors import KafkaTimeoutError

from streams.config import Settings
from streams.topics import TopicError, list_topics

# A missing topic's error lists at most this many of the broker's topics.
MAX_LISTED_TOPICS = 20

__all__ = ["TailedMessage", "iter_messages", "tail"]


class TailedMessage(dict):
    """One message: ``topic``, ``partition``, ``offset``, ``timestamp_ms``, ``key`` and decoded ``value``."""


def iter_messages(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = True,
    idle_timeout_s: float | None = None,
    max_messages: int | None = None,
) -> Iterator[TailedMessage]:
    """Yield messages of ``topic`` until ``max_messages`` or ``idle_timeout_s`` without one.

    The consumer joins no group and commits nothing, so tailing never moves
    a worker's offsets. Values that are JSON are decoded; others are given as
    text, or as None for an empty value. Raises :class:`TopicError` when no
    broker answers or ``topic`` does not exist.
    """
    names = list_topics(settings)
    if topic not in names:
        listed = ", ".join(names[:MAX_LISTED_TOPICS]) or "none"
        more = f" and {len(names) - MAX_LISTED_TOPICS} more" if len(names) > MAX_LISTED_TOPICS else ""
        raise TopicError(f"topic {topic!r} not found on {settings.bootstrap_servers}; "
                         f"its topics are: {listed}{more}")
    try:
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=settings.bootstrap_list,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
        )
    except KafkaTimeoutError as exc:
        raise TopicError(f"no Kafka broker at {settings.bootstrap_servers}: {exc}") from exc
    n_seen = 0
    last_message = time.monotonic()
    try:
        while max_messages is None or n_seen < max_messages:
            batches = consumer.poll(timeout_ms=200)
            if not batches:
                if idle_timeout_s is not None and time.monotonic() - last_message >= idle_timeout_s:
                    return
                continue
            last_message = time.monotonic()
            for records in batches.values():
                for record in records:
                    yield TailedMessage(
                        topic=record.topic, partition=record.partition, offset=record.offset,
                        timestamp_ms=record.timestamp,
                        key=None if record.key is None else record.key.decode("utf-8", "replace"),
                        value=_decode(record.value),
                    )
                    n_seen += 1
                    if max_messages is not None and n_seen >= max_messages:
                        return
    finally:
        consumer.close()


def tail(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = True,
    idle_timeout_s: float | None = None,
    max_messages: int | None = None,
    with_metadata: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Print each message of ``topic`` as one JSON line and return how many were printed."""
    n_printed = 0
    for message in iter_messages(settings, topic, from_beginning=from_beginning,
                                 idle_timeout_s=idle_timeout_s, max_messages=max_messages):
        line = message if with_metadata else message["value"]
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
        out.flush()
        n_printed += 1
    return n_printed


def _decode(value: bytes | None) -> Any:
    if value is None:
        return None
    text = value.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text

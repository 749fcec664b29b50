"""Topic creation and inspection with kafka-python's admin client.

The worker's source topic and its tables must have the same partition count
(Faust co-partitions them), so the topics are created up front with
``Settings.partitions`` instead of relying on the broker's auto-creation.
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from streams.config import Settings

__all__ = ["TopicError", "ensure_topics", "list_topics", "topic_exists", "topic_partitions", "admin_client"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0


class TopicError(RuntimeError):
    """Topics could not be created or do not match the settings."""


def admin_client(settings: Settings, timeout_s: float = CONNECT_TIMEOUT_S) -> KafkaAdminClient:
    """Connect an admin client, retrying until ``timeout_s`` while the broker starts."""
    deadline = time.monotonic() + timeout_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return KafkaAdminClient(bootstrap_servers=settings.bootstrap_list, request_timeout_ms=10_000)
        except (KafkaTimeoutError, OSError) as exc:
            if time.monotonic() >= deadline:
                raise TopicError(
                    f"no Kafka broker at {settings.bootstrap_servers} (tried {attempt} times in {timeout_s:.0f} s): "
                    "start one with `streamrank kafka start` or set STREAMRANK_BOOTSTRAP_SERVERS"
                ) from exc
            time.sleep(1.0)


def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create the streamrank topics that are missing and return each topic's partition count.

    The events and recommendations topics get ``settings.partitions``
    partitions, the DLQ, metrics, drift and models topics one. An existing events
    topic with another partition count raises :class:`TopicError`, because the
    worker's tables would not line up with it.
    """
    wanted = {
        settings.events_topic: settings.partitions,
        settings.recommendations_topic: settings.partitions,
        settings.dlq_topic: 1,
        settings.metrics_topic: 1,
        settings.drift_topic: 1,
        settings.models_topic: 1,
    }
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(name, n, 1) for name, n in wanted.items() if name not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created them between list and create
            logger.info("created topics %s", ", ".join(t.name for t in missing))
        counts = _partition_counts(admin, list(wanted))
    finally:
        admin.close()
    if counts.get(settings.events_topic) != settings.partitions:
        raise TopicError(
            f"topic {settings.events_topic} has {counts.get(settings.events_topic)} partitions but "
            f"STREAMRANK_PARTITIONS is {settings.partitions}: set STREAMRANK_PARTITIONS to match, "
            "or delete the topic and its changelog topics"
        )
    return counts


def topic_exists(settings: Settings, topic: str) -> bool:
    """Return True when the broker lists ``topic``; raises :class:`TopicError` when no broker responds."""
    return topic in list_topics(settings)


def list_topics(settings: Settings) -> list[str]:
    """Return the names of the broker's topics, sorted, Kafka's internal ones left out.

    Raises :class:`TopicError` when no broker responds.
    """
    admin = admin_client(settings)
    try:
        return sorted(name for name in admin.list_topics() if not name.startswith("__"))
    finally:
        admin.close()


def topic_partitions(settings: Settings, topic: str) -> int | None:
    """Return the partition count of ``topic``, or None when it does not exist."""
    admin = admin_client(settings)
    try:
        return _partition_counts(admin, [topic]).get(topic)
    finally:
        admin.close()


def _partition_counts(admin: KafkaAdminClient, topics: list[str]) -> dict[str, int]:
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        try:
            described = admin.describe_topics(topics)
            counts = {t["name"]: len(t["partitions"]) for t in described if not t.get("error_code")}
            if len(counts) == len(topics) or time.monotonic() >= deadline:
                return counts
        except KafkaError as exc:
            if time.monotonic() >= deadline:
                raise TopicError(f"could not describe topics {topics}: {exc}") from exc
        time.sleep(0.5)

"""The Faust application: topics, the sequences table, the agent and the trainer task.

Per batch of events taken from the events topic, the agent runs, in order:

1. validate each message; an invalid one goes to the DLQ with its reason and
   source offset, and processing moves on;
2. append each valid event to its user's sequence in the ``user_sequences``
   table (RocksDB through rocksdict, changelogged to Kafka) and queue its
   training example, event by event, so the table writes go to that event's
   partition;
3. score the batch's users in one forward pass of the serving snapshot;
4. publish one recommendation per valid event, keyed by user id.

Faust acknowledges the batch's offsets only after step 4, so a crash replays
the batch: sequences skip the redelivered event ids, and recommendations are
published at least once. Before step 2 each event is also scored against the
list last published for its user (test, then train) and fed to the drift
monitors, and each recommended item gets a reason. Training runs beside the
agent (see :mod:`streams.training`), so a training step never blocks the
event loop. Scoring does run torch on the event loop, one forward pass per
batch.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import faust
import faust.streams as faust_streams
import torch
from faust.web import Request, Response, View

from models.drift import DriftAlarm, InputDriftMonitor, QualityDriftMonitor
from models.ranker import RankerConfig
from models.recommender import Observation
from models.trainer import LearnResult, TrainerConfig
from state.sequences import SequenceStore
from streams.config import Settings
from streams.deadletter import dead_letter
from streams.events import InvalidEvent, parse_event
from streams import monitoring
from streams.monitoring import LatencyRecorder
from streams.telemetry import LiveQuality, Timeline
from streams.training import TrainingLoop, restore_recommender

__all__ = ["Worker", "create_app"]

logger = logging.getLogger(__name__)

MAX_EVENTS_PER_BATCH = 256
MAX_BATCH_WAIT_S = 0.05
LOG_INTERVAL_S = 10.0
TIMELINE_INTERVAL_S = 1.0
MAX_ALARMS_KEPT = 1_000
# Alarms on these signals make the trainer adapt; input drift alone does not.
QUALITY_SIGNALS = ("reciprocal_rank", "training_loss")
METRICS_INTERVAL_S = 10.0


@dataclass
class Counters:
    n_valid: int = 0
    n_invalid: int = 0
    n_published: int = 0
    n_batches: int = 0
    started_at: float = field(default_factory=time.time)
    invalid_by_field: dict[str, int] = field(default_factory=dict)


class Worker:
    """One streamrank worker: the Faust app plus the recommender it drives."""

    def __init__(
        self,
        settings: Settings,
        ranker_config: RankerConfig | None = None,
        trainer_config: TrainerConfig | None = None,
    ) -> None:
        # One intra-op thread: scoring on the event loop and training on the
        # trainer thread already keep two cores busy, and more threads per op
        # made a training step several times slower on a 2-core machine.
        torch.set_num_threads(1)

        self.settings = settings
        self.ranker_config = ranker_config or RankerConfig()
        self.trainer_config = trainer_config or TrainerConfig()
        self.counters = Counters()

        self.app = create_app(settings)
        self.events_topic = self.app.topic(
            settings.events_topic, key_type=bytes, value_type=bytes,
            key_serializer="raw", value_serializer="raw", partitions=settings.partitions,
        )
        self.dlq_topic = self.app.topic(settings.dlq_topic, key_serializer="raw", value_serializer="raw")
        self.recommendations_topic = self.app.topic(
            settings.recommendations_topic, key_serializer="raw", value_serializer="raw",
        )
        self.sequences = self.app.Table(
            "user_sequences", default=None, partitions=settings.partitions,
            schema=faust.Schema(key_serializer="json", value_serializer="json"),
            options={"driver": "rocksdict"},
        )
        self.metrics_topic = self.app.topic(settings.metrics_topic, key_serializer="raw", value_serializer="raw")
        self.drift_topic = self.app.topic(settings.drift_topic, key_serializer="raw", value_serializer="raw")

        self.quality_drift = QualityDriftMonitor()
        self.input_drift = InputDriftMonitor()

        self.recommender = restore_recommender(
            settings, SequenceStore(self.sequences, self.ranker_config.max_seq_len),
            self.ranker_config, self.trainer_config,
        )
        self.training = TrainingLoop(self.recommender, settings.checkpoint_dir, on_learned=self._on_learned)

        self.quality = LiveQuality(k=self.settings.top_k)
        self.latency = LatencyRecorder()
        self._timeline = Timeline()
        self._alarms: list[dict[str, Any]] = []
        self.consumer_lag: int | None = None
        self._register()

    def _register(self) -> None:
        app = self.app
        app.agent(self.events_topic, name="process_events")(self._process_events)
        app.task(self.training.run)
        app.timer(LOG_INTERVAL_S)(self._log_progress)
        app.timer(TIMELINE_INTERVAL_S)(self._sample_timeline)
        app.timer(METRICS_INTERVAL_S)(self._publish_metrics)
        app.page("/stats/")(self._stats_view())
        monitoring.register(app, self, self.latency)
        app.page("/users/{user_id}/")(self._user_view())

    async def _process_events(self, stream: faust.Stream) -> Any:
        async for batch in stream.take_events(MAX_EVENTS_PER_BATCH, within=MAX_BATCH_WAIT_S):
            observations: list[Observation] = []
            arrivals: list[float] = []
            for event in batch:
                observation = await self._observe(event)
                if observation is not None:
                    observations.append(observation)
                    arrivals.append(event.message.timestamp)
            if observations:
                recommendations = self.recommender.recommend(observations)
                for rec, arrival in zip(recommendations, arrivals):
                    value = rec.to_dict()
                    await self.recommendations_topic.send(key=rec.user_id.encode(), value=json.dumps(value).encode())
                    self.quality.remember(rec.user_id, [item.item_id for item in rec.items], value)
                    self.latency.observe(max(rec.published_at - arrival, 0.0))
                self.counters.n_published += len(recommendations)
            self.counters.n_batches += 1


    async def _observe(self, event: faust.EventT) -> Observation | None:
        message = event.message
        try:
            parsed = parse_event(event.value)
            if message.key is not None and message.key != parsed.user_id.encode():
                raise InvalidEvent(
                    "key", message.key.decode("utf-8", "replace"),
                    f"message key must be the user_id {parsed.user_id!r}, so that a user's events "
                    "share a partition with their sequence",
                )
        except InvalidEvent as error:
            await self._send_dead_letter(event, error)
            return None
        self.counters.n_valid += 1
        # Test, then train: the list published before this event meets its item first.
        score = self.quality.score(parsed.user_id, parsed.item_id)
        alarms = [] if score is None else self.quality_drift.update_rank(score.reciprocal_rank, parsed.ts)
        new_item = parsed.item_id not in self.recommender.vocabulary
        # No await between here and the table write in observe(), so the
        # partition context cannot change under it.
        _use_partition_of(event)
        observation = self.recommender.observe(parsed)
        if observation.appended:
            alarms += self.input_drift.update(parsed, new_user=len(observation.before) == 0, new_item=new_item)
        await self._publish_drift(alarms)
        return observation

    async def _publish_drift(self, alarms: list[DriftAlarm]) -> None:
        """Log, keep and publish drift alarms, with the model version that was serving."""
        for alarm in alarms:
            record = {**alarm.to_dict(), "model_version": self.recommender.scorer_version, "worker": self.app.conf.id}
            self._alarms.append(record)
            del self._alarms[:-MAX_ALARMS_KEPT]
            await self.drift_topic.send(key=alarm.signal.encode(), value=json.dumps(record).encode())
            logger.warning(
                "drift detected signal=%s detector=%s value=%.4g threshold=%.4g n_seen=%d model_version=%d",
                alarm.signal, alarm.detector, alarm.value, alarm.threshold, alarm.n_seen, record["model_version"],
            )
            if alarm.signal in QUALITY_SIGNALS and self.recommender.adapt_to_drift():
                config = self.recommender.config
                logger.info("adapting to drift lr_multiplier=%.1f steps=%d replay_ratio=%.2f",
                            config.adapt_lr_multiplier, config.adapt_steps, config.adapt_replay_ratio)

    async def _send_dead_letter(self, event: faust.EventT, error: InvalidEvent) -> None:
        message = event.message
        self.counters.n_invalid += 1
        by_field = self.counters.invalid_by_field
        by_field[error.field] = by_field.get(error.field, 0) + 1
        value = dead_letter(
            event.value, error, topic=message.topic, partition=message.partition,
            offset=message.offset, key=message.key, timestamp_ms=int(message.timestamp * 1000),
        )
        await self.dlq_topic.send(key=message.key, value=value)
        if self.counters.n_invalid <= 10 or self.counters.n_invalid % 1000 == 0:
            logger.warning("sent event to DLQ topic=%s partition=%d offset=%d n_invalid=%d: %s",
                           message.topic, message.partition, message.offset, self.counters.n_invalid, error)

    async def _on_learned(self, result: LearnResult) -> None:
        latest_ts = self.recommender.popularity.latest_ts or 0.0
        await self._publish_drift(self.quality_drift.update_loss(result.loss, latest_ts))

    async def _sample_timeline(self) -> None:
        last = self.recommender.stats.last_learn
        quantiles = self.latency.quantiles()
        self._timeline.add(self.counters.n_valid + self.counters.n_invalid, {
            "event_ts": self.recommender.popularity.latest_ts,
            "latency_ms_p50": None if quantiles.p50_s is None else quantiles.p50_s * 1000,
            "latency_ms_p95": None if quantiles.p95_s is None else quantiles.p95_s * 1000,
            "loss": None if last is None else last.loss,
            "model_version": self.recommender.scorer_version,
            **self.quality.summary(),
        })

    async def _publish_metrics(self) -> None:
        """Measure consumer lag and publish the rolling quality window to the metrics topic."""
        self.consumer_lag = await self._measure_lag()
        window = {
            "worker": self.app.conf.id,
            "published_at": time.time(),
            "event_ts": self.recommender.popularity.latest_ts,
            "model_version": self.recommender.scorer_version,
            "events_scored": self.quality.n_scored,
            **self.quality.summary(),
        }
        await self.metrics_topic.send(key=self.app.conf.id.encode(), value=json.dumps(window).encode())

    async def _measure_lag(self) -> int | None:
        consumer = self.app.consumer
        try:
            assigned = [tp for tp in consumer.assignment() if tp.topic == self.settings.events_topic]
            lag = 0
            for tp in assigned:
                position = await consumer.position(tp)
                lag += max(consumer.highwater(tp) - (position or 0), 0)
        except (KeyError, AttributeError, AssertionError, RuntimeError) as exc:
            logger.debug("consumer lag unavailable: %r", exc)
            return None
        return lag

    async def _log_progress(self) -> None:
        stats = self.stats()
        logger.info(
            "progress events=%d invalid=%d published=%d events_per_s=%.1f model_version=%d "
            "loss=%s pending_examples=%d",
            stats["events_valid"], stats["events_invalid"], stats["recommendations_published"],
            stats["events_per_s"], stats["model_version"], stats["last_loss"], stats["pending_examples"],
        )

    def stats(self) -> dict[str, Any]:
        """Counters of this worker since it started, for logs and the /stats/ page."""
        counters, rec = self.counters, self.recommender
        elapsed = max(time.time() - counters.started_at, 1e-9)
        last = rec.stats.last_learn
        recovery = self.app.tables.recovery
        return {
            # True once partitions are assigned and tables recovered from their changelogs.
            "ready": bool(recovery.completed.is_set() and not self.app.rebalancing and not recovery.in_recovery),
            "events_valid": counters.n_valid,
            "events_invalid": counters.n_invalid,
            "invalid_by_field": dict(counters.invalid_by_field),
            "events_duplicate": rec.stats.n_duplicates,
            "recommendations_published": counters.n_published,
            "recommendations_from_ranker": rec.stats.n_from_ranker,
            "events_per_s": (counters.n_valid + counters.n_invalid) / elapsed,
            "model_version": rec.scorer_version,
            "items": len(rec.vocabulary) - 1,
            "examples_queued": rec.stats.n_examples,
            "examples_dropped": rec.stats.n_examples_dropped,
            "pending_examples": len(rec.pending),
            "last_loss": None if last is None else round(last.loss, 4),
            "examples_trained": rec.stats.n_trained,
            "examples_per_s": rec.stats.n_trained / elapsed,
            "model_age_s": time.time() - self.training.model_updated_at,
            "consumer_lag": self.consumer_lag,
            "drift_alarms": len(self._alarms),
            "adaptations": rec.stats.n_adaptations,
            **self.quality.summary(),
            "uptime_s": elapsed,
        }

    def timeline(self) -> list[dict[str, Any]]:
        """Points over wall time for the monitoring page, oldest first."""
        return self._timeline.points()

    def alarms(self) -> list[dict[str, Any]]:
        """Drift alarms raised by this worker, newest last."""
        return list(self._alarms)

    def recommendation(self, user_id: str) -> dict[str, Any] | None:
        """Return the latest recommendation this worker published for ``user_id``, or None."""
        return self.quality.recommendation(user_id)

    def _stats_view(self) -> type[View]:
        worker = self

        class StatsView(View):
            async def get(self, request: Request) -> Response:
                return self.json(worker.stats())

        return StatsView

    def _user_view(self) -> type[View]:
        worker = self

        class UserView(View):
            async def get(self, request: Request, user_id: str) -> Response:
                data = worker.sequences.get(user_id)
                if data is None:
                    return self.json({"error": f"user {user_id!r} not found on this worker"}, status=404)
                return self.json({"user_id": user_id, **data})

        return UserView

    def run(self, loglevel: str = "info") -> None:
        """Run the worker until interrupted; saves a checkpoint when it stops."""
        from faust.worker import Worker as FaustWorker

        @self.app.on_before_shutdown.connect
        async def _checkpoint_on_shutdown(app: faust.App, **kwargs: Any) -> None:
            if self.recommender.trainer.version > 0:
                self.training.save_checkpoint()

        FaustWorker(self.app, loglevel=loglevel).execute_from_commandline()


def _use_partition_of(event: faust.EventT) -> None:
    """Make table reads and writes use ``event``'s partition.

    NOTE: faust-streaming 0.15 finds a table write's partition, and the RocksDB
    database it goes to, through a context variable of ``faust.streams``,
    which ``take_events`` leaves at the last event of the batch. Only that
    variable is set here: ``Stream._set_current_event`` also sets the
    attribute that ``take_events`` reads while it buffers the next messages,
    and using it made a few messages be processed twice and others never.
    """
    faust_streams._current_event.set(weakref.ref(event))


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app from ``settings``; topics and tables are added by :class:`Worker`."""
    settings.table_dir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app_id,
        broker=settings.broker_url,
        store="rocksdb://",
        datadir=str(settings.table_dir.resolve()),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        producer_linger_ms=5,
        broker_commit_interval=1.0,
        table_cleanup_interval=300.0,
    )

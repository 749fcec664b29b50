"""Settings for every streamrank command, read from the environment in one place.

Each field documents its environment variable. CLI flags override the
environment through :func:`Settings.replace`. Paths are resolved on use, so a
relative ``STREAMRANK_DATA_DIR`` means relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Settings", "ConfigError", "TOPIC_FIELDS"]

TOPIC_FIELDS = ("events_topic", "dlq_topic", "recommendations_topic", "metrics_topic", "drift_topic", "models_topic")


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Broker address, topic names, data folder and web settings of every command."""

    # STREAMRANK_BOOTSTRAP_SERVERS: comma-separated host:port list of Kafka brokers.
    bootstrap_servers: str = "127.0.0.1:29092"
    # STREAMRANK_DATA_DIR: RocksDB tables, checkpoints and the local broker's logs.
    data_dir: Path = Path("data")
    # STREAMRANK_APP_ID: Faust application id, which is also the consumer group
    # and the prefix of the changelog topics.
    app_id: str = "streamrank"
    # STREAMRANK_EVENTS_TOPIC and the five below: topic names.
    events_topic: str = "streamrank.events"
    dlq_topic: str = "streamrank.events.dlq"
    recommendations_topic: str = "streamrank.recommendations"
    metrics_topic: str = "streamrank.metrics"
    drift_topic: str = "streamrank.drift"
    models_topic: str = "streamrank.models"
    # STREAMRANK_PARTITIONS: partitions of the events topic; tables follow it.
    partitions: int = 4
    # STREAMRANK_TOP_K: items per recommendation.
    top_k: int = 10
    # STREAMRANK_WEB_PORT: the worker's HTTP port (user lookups, health), bound to
    # STREAMRANK_WEB_HOST.
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    # STREAMRANK_KAFKA_PORT: port of the local broker started by `streamrank kafka start`;
    # its controller listens on the next port.
    kafka_port: int = 29092
    # STREAMRANK_KAFKA_HOME: cache of the broker's jars, outside the repository.
    kafka_home: Path = Path.home() / ".cache" / "streamrank" / "kafka"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Build settings from ``STREAMRANK_*`` variables, defaults for the rest."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = "STREAMRANK_" + field.name.upper()
            if name in env:
                values[field.name] = _convert(name, env[name], field.type)
        return cls(**values).validated()

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied, ignoring those that are None."""
        changes = {key: value for key, value in changes.items() if value is not None}
        return dataclasses.replace(self, **changes).validated()

    def isolated(self, run_id: str, data_dir: Path) -> Settings:
        """Return settings whose app id, topics and data folder belong to ``run_id`` alone.

        The demo and the integration tests use it so that runs on one broker
        never read each other's messages.
        """
        return self.replace(
            app_id=run_id,
            data_dir=data_dir,
            **{name: f"{run_id}.{getattr(self, name).removeprefix('streamrank.')}" for name in TOPIC_FIELDS},
        )

    def to_env(self) -> dict[str, str]:
        """Return the ``STREAMRANK_*`` variables that recreate these settings in a child process."""
        return {"STREAMRANK_" + field.name.upper(): str(getattr(self, field.name)) for field in dataclasses.fields(self)}

    def validated(self) -> Settings:
        if self.partitions < 1:
            raise ConfigError(f"STREAMRANK_PARTITIONS must be at least 1, got {self.partitions}")
        if not 1 <= self.top_k <= 1000:
            raise ConfigError(f"STREAMRANK_TOP_K must be in [1, 1000], got {self.top_k}")
        for name in ("web_port", "kafka_port"):
            port = getattr(self, name)
            if not 1 <= port <= 65534:
                raise ConfigError(f"STREAMRANK_{name.upper()} must be a TCP port in [1, 65534], got {port}")
        if not self.bootstrap_servers.strip():
            raise ConfigError("STREAMRANK_BOOTSTRAP_SERVERS is empty: set it to host:port, e.g. 127.0.0.1:29092")
        return self

    @property
    def broker_url(self) -> str:
        """The bootstrap servers in Faust's ``kafka://`` URL form."""
        return ";".join("kafka://" + server.strip() for server in self.bootstrap_servers.split(","))

    @property
    def bootstrap_list(self) -> list[str]:
        return [server.strip() for server in self.bootstrap_servers.split(",") if server.strip()]

    @property
    def checkpoint_dir(self) -> Path:
        return self.data_dir / "checkpoints"

    @property
    def table_dir(self) -> Path:
        return self.data_dir / "tables"


def _convert(name: str, raw: str, annotation: Any) -> Any:
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if kind == "int":
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if kind == "Path":
        return Path(raw).expanduser()
    return raw

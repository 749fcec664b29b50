"""Fixtures for tests against the real local Kafka broker and real worker processes.

Each test gets its own topics, consumer group, data folder and web port, so
tests never see each other's messages and can run on a broker that already
holds data.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from streams import broker
from streams.config import Settings
from streams.tail import iter_messages
from streams.topics import ensure_topics

REPO = Path(__file__).resolve().parents[2]
WORKER_READY_TIMEOUT_S = 120.0


@pytest.fixture(scope="session")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a running local broker; starts one for the session when none runs."""
    settings = Settings.from_env()
    started = False
    if not broker.status(settings).running:
        settings = settings.replace(data_dir=tmp_path_factory.mktemp("broker"))
        try:
            broker.start(settings)
        except broker.BrokerError as exc:
            pytest.fail(f"the local Kafka broker could not start: {exc}")
        started = True
    yield settings
    if started:
        broker.stop(settings)


@pytest.fixture
def run_settings(kafka_settings: Settings, tmp_path: Path) -> Settings:
    """Settings with topics, group, data folder and web port of this test alone."""
    run_id = "test-" + uuid.uuid4().hex[:10]
    settings = kafka_settings.isolated(run_id, tmp_path / "worker").replace(partitions=2, web_port=_free_port())
    ensure_topics(settings)
    return settings


class WorkerProcess:
    """A `streamrank worker` subprocess with the given settings."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **self.settings.to_env()}
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child until it exits
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"], cwd=REPO, env=env,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"worker exited early:\n{self.log_tail()}"
            stats = self.get("/stats/")
            if stats is not None and stats["ready"]:
                return
            time.sleep(0.5)
        pytest.fail(f"worker not ready after {WORKER_READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def get(self, path: str) -> Any:
        """GET a JSON page of the worker; None when it does not answer or answers 404."""
        url = f"http://127.0.0.1:{self.settings.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def log_tail(self, n_lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n_lines:])


@pytest.fixture
def worker(run_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(run_settings, tmp_path / "worker.log")
    yield process
    process.stop()


@pytest.fixture
def producer(kafka_settings: Settings) -> Iterator[KafkaProducer]:
    client = KafkaProducer(bootstrap_servers=kafka_settings.bootstrap_list, acks="all")
    yield client
    client.close()


@pytest.fixture
def collect():
    """Return a reader of a topic from the beginning, until n messages or ``timeout_s`` of silence."""

    def read(settings: Settings, topic: str, n_expected: int, timeout_s: float = 120.0) -> list[dict[str, Any]]:
        return list(iter_messages(settings, topic, idle_timeout_s=timeout_s, max_messages=n_expected))

    return read


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

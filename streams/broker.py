"""The local Apache Kafka broker: fetch, format, start, stop and probe it.

One combined KRaft broker and controller bound to 127.0.0.1, run from the
official ``org.apache.kafka:kafka_2.13`` jars that Maven copies from Maven
Central into ``Settings.kafka_home``. Its data and ``server.log`` live under
``<data_dir>/kafka``. Every operation here is idempotent.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from streams.config import Settings

__all__ = ["BrokerError", "BrokerStatus", "ensure_jars", "reachable", "start", "stop", "status"]

logger = logging.getLogger(__name__)

DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy" / "kafka"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
HEAP = "-Xmx768m"


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or stopped."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    address: str
    log_path: Path

    def describe(self) -> str:
        if self.running and self.pid is None:
            return f"running: a broker started elsewhere listens on {self.address}"
        if self.running:
            return f"running: pid {self.pid}, listening on {self.address}, log {self.log_path}"
        if self.pid is not None:
            return f"not reachable: pid {self.pid} exists but {self.address} refuses connections; log {self.log_path}"
        return f"stopped (log {self.log_path})"


def ensure_jars(settings: Settings) -> Path:
    """Copy the broker's jars into the cache with Maven unless already there.

    Returns the folder of jars. Raises :class:`BrokerError` when Maven is
    missing or fails, with the tail of its output.
    """
    pom = DEPLOY_DIR / "pom.xml"
    libs = settings.kafka_home / "libs"
    marker = libs / ".complete"
    if marker.exists() and marker.read_text() == pom.read_text():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) not found on PATH: install it (Debian: apt-get install maven)")
    if libs.exists():
        shutil.rmtree(libs)
    logger.info("fetching Kafka jars with Maven into %s", libs)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-2000:]
        raise BrokerError(f"mvn could not fetch the Kafka jars (exit {result.returncode}):\n{tail}")
    marker.write_text(pom.read_text())
    return libs


def start(settings: Settings) -> BrokerStatus:
    """Start the broker unless it is already running, and wait until it serves requests.

    Steps: fetch the jars, write ``server.properties``, format the KRaft
    storage on first use, launch ``kafka.Kafka`` detached from this process,
    then poll until a client gets cluster metadata. On failure the process is
    stopped and :class:`BrokerError` names the log to read.
    """
    current = status(settings)
    if current.running:
        return current
    if current.pid is not None:
        stop(settings)
    if _metadata_ready(settings.kafka_port):
        logger.warning("a Kafka broker started elsewhere already listens on port %d: using it",
                       settings.kafka_port)
        return BrokerStatus(True, None, f"127.0.0.1:{settings.kafka_port}", _log_path(settings))
    if _port_open(settings.kafka_port):
        raise BrokerError(
            f"port {settings.kafka_port} on 127.0.0.1 is taken by another process: stop it "
            "or choose another port with STREAMRANK_KAFKA_PORT"
        )

    libs = ensure_jars(settings)

    home = _broker_dir(settings)
    log_dir = home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    properties = home / "server.properties"
    template = (DEPLOY_DIR / "server.properties").read_text()
    properties.write_text(template.format(
        port=settings.kafka_port, controller_port=settings.kafka_port + 1, log_dir=log_dir.resolve(),
    ))

    classpath = f"{libs}/*"
    if not (log_dir / "meta.properties").exists():
        _format_storage(classpath, properties)

    log_path = _log_path(settings)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            ["java", HEAP, f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.yaml'}",
             "-cp", classpath, "kafka.Kafka", str(properties)],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pid_path(settings).write_text(str(process.pid))
    logger.info("started Kafka pid=%d port=%d log=%s", process.pid, settings.kafka_port, log_path)

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if _metadata_ready(settings.kafka_port):
            return status(settings)
        time.sleep(0.5)
    stop(settings)
    raise BrokerError(
        f"Kafka did not start within {START_TIMEOUT_S:.0f} s (exit code {process.poll()}): "
        f"read {log_path}. Last lines:\n{_tail(log_path)}"
    )


def stop(settings: Settings) -> BrokerStatus:
    """Stop the broker with SIGTERM, then SIGKILL after ``STOP_TIMEOUT_S``."""
    pid = _read_pid(settings)
    if pid is not None and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            logger.warning("Kafka pid=%d ignored SIGTERM for %.0f s, sending SIGKILL", pid, STOP_TIMEOUT_S)
            os.kill(pid, signal.SIGKILL)
    _pid_path(settings).unlink(missing_ok=True)
    return status(settings)


def status(settings: Settings) -> BrokerStatus:
    pid = _read_pid(settings)
    if pid is not None and not _alive(pid):
        pid = None
    running = pid is not None and _port_open(settings.kafka_port)
    return BrokerStatus(running, pid, f"127.0.0.1:{settings.kafka_port}", _log_path(settings))


def reachable(settings: Settings) -> bool:
    """Return True when a broker, started here or not, responds on ``settings.kafka_port``."""
    return _metadata_ready(settings.kafka_port)


def _format_storage(classpath: str, properties: Path) -> None:
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    result = subprocess.run(
        ["java", "-cp", classpath, "kafka.tools.StorageTool", "format",
         "-t", cluster_id, "-c", str(properties)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise BrokerError(f"formatting KRaft storage failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")


def _metadata_ready(port: int) -> bool:
    """Return True once the broker responds to a metadata request, not only to a TCP connect."""
    if not _port_open(port):
        return False
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=3000)
    except (KafkaError, OSError):
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers signal 0; /proc tells it apart.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


def _broker_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "kafka"


def _pid_path(settings: Settings) -> Path:
    return _broker_dir(settings) / "kafka.pid"


def _log_path(settings: Settings) -> Path:
    return _broker_dir(settings) / "server.log"


def _read_pid(settings: Settings) -> int | None:
    try:
        return int(_pid_path(settings).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _tail(path: Path, n_lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n_lines:])
    except FileNotFoundError:
        return "(no log written)"

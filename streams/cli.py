"""The ``streamrank`` command line: kafka, topics, worker, replay, tail, evaluate, demo.

Flags override the ``STREAMRANK_*`` environment variables documented in
:mod:`streams.config`. Logging is configured here and nowhere else.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from streams.config import ConfigError, Settings
from streams.formats import FORMATS as FILE_FORMATS

__all__ = ["main"]

logger = logging.getLogger("streamrank")

MAX_MALFORMED_SHOWN = 10


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    try:
        settings = Settings.from_env().replace(
            bootstrap_servers=args.bootstrap_servers,
            data_dir=args.data_dir,
            partitions=getattr(args, "partitions", None),
            web_port=getattr(args, "web_port", None),
            top_k=getattr(args, "top_k", None),
        )
        return args.handler(settings, args)
    except ConfigError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        return 130
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamrank", description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers, host:port[,host:port] "
                        "(env STREAMRANK_BOOTSTRAP_SERVERS, default 127.0.0.1:29092)")
    parser.add_argument("--data-dir", type=Path, help="folder for tables, checkpoints and the local "
                        "broker (env STREAMRANK_DATA_DIR, default ./data)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    kafka = commands.add_parser("kafka", help="start, stop or check the local Kafka broker")
    kafka.add_argument("action", choices=("start", "stop", "status"))
    kafka.set_defaults(handler=_kafka)

    topics = commands.add_parser("topics", help="create the streamrank topics and print their partitions")
    topics.add_argument("--partitions", type=int, help="partitions of the events topic (env STREAMRANK_PARTITIONS)")
    topics.set_defaults(handler=_topics)

    worker = commands.add_parser("worker", help="run a Faust worker: events in, recommendations out")
    worker.add_argument("--partitions", type=int, help="partitions of the events topic (env STREAMRANK_PARTITIONS)")
    worker.add_argument("--web-port", type=int, help="HTTP port of /stats/ and /users/ID/ (env STREAMRANK_WEB_PORT)")
    worker.add_argument("--top-k", type=int, help="items per recommendation (env STREAMRANK_TOP_K)")
    worker.add_argument("--encoder", choices=("transformer", "lstm"), default="transformer",
                        help="sequence encoder of the ranker")
    worker.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    worker.set_defaults(handler=_worker)

    replay = commands.add_parser("replay", help="produce a real or synthetic log to the events topic")
    _add_source_arguments(replay, path_required=True)
    replay.set_defaults(handler=_replay)

    tail = commands.add_parser("tail", help="print a topic's messages as JSON lines")
    tail.add_argument("topic", help="the topic to read, such as streamrank.recommendations")
    tail.add_argument("--latest", action="store_true", help="start at the end instead of the beginning")
    tail.add_argument("--max-messages", type=int, help="stop after this many messages")
    tail.add_argument("--idle-timeout-s", type=float, help="stop after this many seconds without a message")
    tail.add_argument("--metadata", action="store_true",
                      help="print partition, offset, key and timestamp around each value")
    tail.set_defaults(handler=_tail)

    from streams.evaluate_cli import add_evaluate_parser

    add_evaluate_parser(commands)

    demo = commands.add_parser("demo", help="run the whole pipeline on a log and summarize it")
    demo.add_argument("--data", type=Path, help="log to replay (default: the synthetic generator)")
    demo.add_argument("--format", default="synthetic", choices=("synthetic",) + FILE_FORMATS)
    demo.add_argument("--limit", type=int, help="replay only the first N events in event-time order")
    demo.add_argument("--speed", default="max", help="'max', or a multiple of real time such as 3600")
    demo.add_argument("--n-events", type=int, default=20_000, help="synthetic events to generate")
    demo.add_argument("--seed", type=int, default=0, help="seed of the synthetic generator")
    demo.add_argument("--partitions", type=int, help="partitions of the events topic")
    demo.add_argument("--web-port", type=int, help="HTTP port of the demo's worker")
    demo.add_argument("--no-invalid", action="store_true", help="do not inject invalid messages")
    demo.add_argument("--keep-broker", action="store_true", help="leave a broker the demo started running")
    demo.add_argument("--drain-timeout-s", type=float, default=180.0,
                      help="give up waiting for the worker after this many seconds without output")
    demo.set_defaults(handler=_demo)
    return parser


def _add_source_arguments(parser: argparse.ArgumentParser, path_required: bool) -> None:
    parser.add_argument("path", type=Path, nargs=None if path_required else "?",
                        help="the log file (ignored for --format synthetic)")
    parser.add_argument("--format", required=True, choices=("synthetic",) + FILE_FORMATS)
    parser.add_argument("--limit", type=int, help="replay only the first N events in event-time order")
    parser.add_argument("--speed", default="max", help="'max', or a multiple of real time such as 3600")
    parser.add_argument("--n-events", type=int, default=20_000, help="synthetic events to generate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic generator")


def _kafka(settings: Settings, args: argparse.Namespace) -> int:
    from streams import broker

    action = {"start": broker.start, "stop": broker.stop, "status": broker.status}[args.action]
    try:
        status = action(settings)
    except broker.BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Kafka {status.describe()}")
    return 0 if status.running or args.action == "stop" else 3


def _topics(settings: Settings, args: argparse.Namespace) -> int:
    from streams.topics import TopicError, ensure_topics

    try:
        counts = ensure_topics(settings)
    except TopicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for topic, n in sorted(counts.items()):
        print(f"{topic}\t{n} partition{'' if n == 1 else 's'}")
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from models.ranker import RankerConfig
    from streams.app import Worker
    from streams.topics import TopicError, ensure_topics

    try:
        ensure_topics(settings)
    except TopicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    Worker(settings, RankerConfig(encoder=args.encoder)).run(loglevel=args.loglevel)
    return 0


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from streams.replay import replay_events
    from streams.topics import TopicError, ensure_topics

    speed = _speed(args.speed)
    events = _load(args)
    if events is None:
        return 1
    if not events:
        print(f"error: no valid events in {args.path}: is --format {args.format} the right format?",
              file=sys.stderr)
        return 1
    try:
        ensure_topics(settings)
    except TopicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result = replay_events(settings, events, total=len(events), speed=speed)
    print(f"sent {result.n_sent:,} events to {settings.events_topic} in {result.elapsed_s:.1f} s "
          f"({result.events_per_s:,.0f}/s), {result.n_failed} failed")
    if result.first_error:
        print(f"first send error: {result.first_error}", file=sys.stderr)
    return 0 if result.n_failed == 0 else 1


def _tail(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tail import tail
    from streams.topics import TopicError

    if args.idle_timeout_s is not None and not args.idle_timeout_s > 0:
        print(f"error: --idle-timeout-s must be a positive number of seconds, got {args.idle_timeout_s}",
              file=sys.stderr)
        return 2
    try:
        tail(settings, args.topic, from_beginning=not args.latest, idle_timeout_s=args.idle_timeout_s,
             max_messages=args.max_messages, with_metadata=args.metadata)
    except TopicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from streams.demo import DemoOptions, run_demo

    speed = _speed(args.speed)
    events = _load(args)
    if not events:
        if events is not None:
            print(f"error: no valid events in {args.data}: is --format {args.format} the right format?",
                  file=sys.stderr)
        return 1
    options = DemoOptions(
        drain_timeout_s=args.drain_timeout_s, speed=speed,
        inject_invalid=not args.no_invalid, keep_broker=args.keep_broker,
    )
    return run_demo(settings, events, options)


def _load(args: argparse.Namespace) -> list | None:
    """Load the events named by ``--format`` and the path, reporting malformed rows."""
    from streams.formats import load_events
    from streams.synthetic import SyntheticConfig, generate

    if args.format == "synthetic":
        events = list(generate(SyntheticConfig(n_events=args.n_events, seed=args.seed)))
        return events[: args.limit] if args.limit else events
    path = getattr(args, "path", None) or getattr(args, "data", None)
    if path is None:
        print(f"error: --format {args.format} needs a file: pass --data PATH", file=sys.stderr)
        return None
    try:
        result = load_events(path, args.format, limit=args.limit)
    except (FileNotFoundError, IsADirectoryError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    for row in result.malformed[:MAX_MALFORMED_SHOWN]:
        print(f"skipped malformed row {row.path}:{row.line}: {row.reason}", file=sys.stderr)
    if len(result.malformed) > MAX_MALFORMED_SHOWN:
        print(f"... and {len(result.malformed) - MAX_MALFORMED_SHOWN} more malformed rows", file=sys.stderr)
    print(f"loaded {len(result.events):,} events from {path} ({result.n_rows:,} rows, "
          f"{len(result.malformed):,} malformed)")
    return result.events


def _speed(raw: str) -> float | None:
    if raw == "max":
        return None
    try:
        speed = float(raw)
    except ValueError:
        raise SystemExit(f"error: --speed must be 'max' or a positive number, got {raw!r}") from None
    if not speed > 0:
        raise SystemExit(f"error: --speed must be 'max' or a positive number, got {raw!r}")
    return speed


if __name__ == "__main__":
    sys.exit(main())

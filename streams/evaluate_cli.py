"""The ``streamrank evaluate`` command: a prequential comparison of recommenders on one log.

It loads a log (or generates a synthetic stream), runs
:func:`models.evaluation.prequential` over the chosen models, prints a table
per protocol, and writes to ``--out``: ``report.json`` with every breakdown
and setting, and one PNG per metric showing it per window of stream time.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from models.baselines.catalog import MODEL_NAMES, ComparisonConfig, build_models, retrain_interval
from models.evaluation import PROTOCOLS, Report, prequential
from models.metrics import AUC_KEY, METRIC_NAMES, metric_key
from models.trainer import TrainerConfig
from streams.events import Event
from streams.formats import FORMATS

__all__ = ["add_evaluate_parser", "load_stream", "plot_report", "run_evaluate", "write_report"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "streamrank"
# Fraction of the scored part between two retrainings of streamrank-retrain, when not set.
DEFAULT_RETRAIN_FRACTION = 0.5


def add_evaluate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to ``subparsers`` and return its parser.

    The handler is stored as ``handler`` and is called as ``handler(settings, args)``.
    """
    parser = subparsers.add_parser(
        "evaluate", help="compare recommenders on a log, test-then-train (prequential)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("path", type=Path, nargs="?", help="the log file (not used with --format synthetic)")
    parser.add_argument("--format", required=True, choices=("synthetic",) + FORMATS, help="format of the log")
    parser.add_argument("--limit", type=int, help="evaluate only the first N events in event-time order")
    parser.add_argument("--n-events", type=int, default=20_000, help="events to generate with --format synthetic")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--model", action="append", choices=MODEL_NAMES,
                        help=f"a model to evaluate; repeat for several (default: {DEFAULT_MODEL})")
    chosen.add_argument("--compare", action="store_true", help="evaluate every model")
    parser.add_argument("--warmup", type=float, default=0.5,
                        help="fraction of events learned before scoring starts (default 0.5)")
    parser.add_argument("--k", type=int, nargs="+", default=[10, 20], help="cut-offs K of the metrics")
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS),
                        help="which events are scored: all, and/or only items new to the user")
    parser.add_argument("--windows", type=int, default=10, help="windows of the scored part in the breakdown")
    parser.add_argument("--auc-every", type=int, default=10,
                        help="compute the sampled AUC on every Nth scored event (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the models, the AUC sample and synthetic data")
    parser.add_argument("--drift-at", type=int,
                        help="with --format synthetic: redraw the synthetic world from this event on (a known drift)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the batch-trained rankers")
    parser.add_argument("--retrain-every", type=int,
                        help="events between retrainings of streamrank-retrain "
                             f"(default: {DEFAULT_RETRAIN_FRACTION:g} of the scored part)")
    parser.add_argument("--learning-rate", type=float,
                        help=f"learning rate of every ranker variant (default {TrainerConfig().learning_rate:g})")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="threads torch may use (default 1: two threads slowed the default ranker down on a 2-core machine)")
    parser.add_argument("--out", type=Path, help="folder for report.json and the plots "
                        "(default: reports/evaluate-FORMAT)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run_evaluate)
    return parser


def run_evaluate(settings: object, args: argparse.Namespace) -> int:
    """Run the comparison that ``args`` describes and return the exit status.

    ``settings`` is the CLI's Kafka settings object, which evaluation does not use.
    """
    import torch

    problem = _check_flags(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.torch_threads)
    try:
        events = load_stream(args.format, args.path, limit=args.limit, n_events=args.n_events, seed=args.seed,
                             drift_at=args.drift_at)
    except (FileNotFoundError, IsADirectoryError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not events:
        print(f"error: the log has no events to evaluate; check that --format {args.format} matches the file",
              file=sys.stderr)
        return 1

    names = list(MODEL_NAMES) if args.compare else (args.model or [DEFAULT_MODEL])
    n_scored = len(events) - int(len(events) * args.warmup)
    try:
        retrain_every = args.retrain_every or retrain_interval(n_scored, DEFAULT_RETRAIN_FRACTION)
        trainer = TrainerConfig()
        if args.learning_rate is not None:
            trainer = replace(trainer, learning_rate=args.learning_rate)
        config = ComparisonConfig(seed=args.seed, trainer=trainer, n_epochs=args.epochs, retrain_every=retrain_every)
        models = build_models(names, config)
        report = prequential(
            events, models, k_values=args.k, warmup_fraction=args.warmup, protocols=args.protocols,
            n_windows=args.windows, auc_every=args.auc_every, seed=args.seed, progress=not args.no_progress,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    report.extra["source"] = {
        "format": args.format, "path": None if args.path is None else str(args.path), "limit": args.limit,
        "n_events_generated": args.n_events if args.format == "synthetic" else None,
    }
    for protocol in report.config["protocols"]:
        print()
        print(report.format_table(protocol))
    out_dir = args.out or Path("reports") / f"evaluate-{args.format}"
    written = write_report(report, out_dir)
    print(f"\n{report.n_events:,} events in {report.elapsed_s:.1f} s "
          f"({report.n_events / max(report.elapsed_s, 1e-9):,.0f} events/s); wrote {len(written)} files to {out_dir}")
    return 0


def load_stream(
    fmt: str, path: Path | None, *, limit: int | None, n_events: int, seed: int, drift_at: int | None = None,
) -> list[Event]:
    """Return the events of a log, or a synthetic stream, sorted by ``ts``.

    ``drift_at`` (synthetic only) switches the generator to a second seed
    from that event on, see :func:`streams.synthetic.generate_with_drift`.

    Raises ``ValueError`` when a file format is given without a path, and
    whatever :func:`streams.formats.load_events` raises for a bad file.
    """
    from streams.formats import load_events
    from streams.synthetic import SyntheticConfig, generate, generate_with_drift

    if drift_at is not None and fmt != "synthetic":
        raise ValueError(f"--drift-at needs --format synthetic, got --format {fmt}")
    if fmt == "synthetic" and drift_at is not None:
        events = generate_with_drift(SyntheticConfig(n_events=n_events, seed=seed), drift_at)
        return events[:limit] if limit is not None else events
    if fmt == "synthetic":
        events = list(generate(SyntheticConfig(n_events=n_events, seed=seed)))
        return events[:limit] if limit is not None else events
    if path is None:
        raise ValueError(f"--format {fmt} needs the log file: pass its PATH")
    result = load_events(path, fmt, limit=limit)
    if result.malformed:
        first = result.malformed[0]
        print(f"skipped {len(result.malformed):,} malformed rows; first at {first.path}:{first.line}: {first.reason}",
              file=sys.stderr)
    print(f"loaded {len(result.events):,} events from {path} ({result.n_rows:,} rows)")
    return result.events


def write_report(report: Report, out_dir: Path) -> list[Path]:
    """Write ``report.json`` and the per-window plots under ``out_dir``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report.to_dict(), indent=1, allow_nan=False) + "\n")
    return [json_path, *plot_report(report, out_dir)]


def plot_report(report: Report, out_dir: Path, title: str | None = None) -> list[Path]:
    """Draw one PNG per metric: its value per window of the scored part, a line per model.

    Each protocol gets a panel. The x axis is the number of events streamed
    at the end of the window; a dotted vertical line in a model's color marks
    each quality drift alarm on that model. Returns the paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [metric_key(name, k) for k in report.config["k_values"] for name in METRIC_NAMES] + [AUC_KEY]
    protocols = report.config["protocols"]
    x = [window["last_event"] + 1 for window in report.windows]
    paths = []
    for key in keys:
        figure, axes = plt.subplots(1, len(protocols), figsize=(6 * len(protocols), 4), squeeze=False)
        for axis, protocol in zip(axes[0], protocols):
            for result in report.models:
                y = [result.metric(protocol, key, f"window/{window['window']}") for window in report.windows]
                line, = axis.plot(x, [float("nan") if value is None else value for value in y], marker="o",
                                  markersize=3, label=result.name)
                for alarm in result.drift_alarms:
                    axis.axvline(alarm["index"] + 1, color=line.get_color(), linestyle=":", linewidth=1)
            axis.set_title(f"{key}, protocol {protocol}")
            axis.set_xlabel("events streamed")
            axis.set_ylabel(key)
            axis.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=8, loc="best")
        if title:
            figure.suptitle(title)
        figure.tight_layout()
        path = out_dir / f"{_file_stem(key)}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths.append(path)
    return paths


def _check_flags(args: argparse.Namespace) -> str | None:
    """Return what is wrong with the flags, before any slow loading, or None."""
    if not 0.0 <= args.warmup < 1.0:
        return f"--warmup must be a fraction in [0, 1), got {args.warmup}"
    if any(k < 1 for k in args.k):
        return f"--k values must be at least 1, got {' '.join(map(str, args.k))}"
    if args.windows < 1:
        return f"--windows must be at least 1, got {args.windows}"
    if args.auc_every < 1:
        return f"--auc-every must be at least 1, got {args.auc_every}"
    if args.limit is not None and args.limit < 1:
        return f"--limit must be at least 1, got {args.limit}"
    if args.format != "synthetic" and args.path is None:
        return f"--format {args.format} needs the log file: pass its PATH"
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        return f"--out {args.out} is a file: pass a folder for report.json and the plots"
    return None


def _file_stem(key: str) -> str:
    """Turn a metric key into a file name stem: ``HR@10`` becomes ``hr_at_10``."""
    return key.lower().replace("@", "_at_")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``evaluate`` alone, for use before it is wired into ``streamrank``."""
    parser = argparse.ArgumentParser(prog="streamrank")
    add_evaluate_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.handler(None, args)


if __name__ == "__main__":
    sys.exit(main())

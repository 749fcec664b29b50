"""Run the prequential comparison of every model on several public logs and summarize it.

For each log it writes ``report.json`` and the per-window plots under
``OUT/LOG/``, copies the @10 plots to ``--img-dir`` as
``quality-LOG-METRIC.png``, and writes ``OUT/summary.md`` with one Markdown
table per log and protocol, the machine and the command line.

    python benchmarks/evaluate_all.py --data-dir "$STREAMRANK_LOGS" --logs taobao yoochoose

``--data-dir`` is the folder containing the logs' folders, laid out as in
:data:`LOGS`. The logs are not part of the repository.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from models.baselines.catalog import MODEL_NAMES, ComparisonConfig, build_models, retrain_interval
from models.evaluation import Report, prequential
from streams.evaluate_cli import load_stream, write_report

logger = logging.getLogger("benchmarks.evaluate_all")

# Log name -> (path under --data-dir, format for streams.formats.load_events).
LOGS = {
    "taobao": ("taobao-userbehavior-sample/UserBehavior_head.csv", "taobao"),
    "yoochoose": ("yoochoose-clicks-sample/yoochoose-clicks-100k_train_full.txt", "yoochoose"),
    "diginetica": ("diginetica-sample/sample_train-item-views.csv", "diginetica"),
    "movielens": ("movielens-latest-small/ratings.csv", "movielens"),
}
TABLE_KEYS = ("HR@10", "NDCG@10", "MRR@10")
PLOTTED_KEYS = ("hr_at_10", "ndcg_at_10", "mrr_at_10")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.torch_threads)
    args.out.mkdir(parents=True, exist_ok=True)
    args.img_dir.mkdir(parents=True, exist_ok=True)

    sections = [_machine(args, argv)]
    for log in args.logs:
        relative, fmt = LOGS[log]
        events = load_stream(fmt, args.data_dir / relative, limit=args.limit, n_events=0, seed=args.seed)
        n_scored = len(events) - int(len(events) * args.warmup)
        config = ComparisonConfig(seed=args.seed, n_epochs=args.epochs,
                                  retrain_every=retrain_interval(n_scored, args.retrain_fraction))
        logger.info("comparison started log=%s n_events=%d retrain_every=%d", log, len(events), config.retrain_every)
        report = prequential(events, build_models(MODEL_NAMES, config), warmup_fraction=args.warmup,
                             seed=args.seed, progress=not args.no_progress)
        report.extra["source"] = {"log": log, "format": fmt, "path": relative, "limit": args.limit}
        report.extra["comparison"] = {"n_epochs": config.n_epochs, "retrain_every": config.retrain_every}
        write_report(report, args.out / log)
        for stem in PLOTTED_KEYS:
            shutil.copyfile(args.out / log / f"{stem}.png", args.img_dir / f"quality-{log}-{stem}.png")
        sections.append(_summary(log, report))
        for protocol in report.config["protocols"]:
            print(report.format_table(protocol), flush=True)

    summary = "\n\n".join(sections) + "\n"
    (args.out / "summary.md").write_text(summary)
    print(summary)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder containing the logs' folders")
    parser.add_argument("--logs", nargs="+", choices=tuple(LOGS), default=["taobao", "yoochoose"])
    parser.add_argument("--limit", type=int, help="use only the first N events of each log")
    parser.add_argument("--warmup", type=float, default=0.5, help="fraction of events learned before scoring")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the batch-trained rankers")
    parser.add_argument("--retrain-fraction", type=float, default=0.5,
                        help="fraction of the scored part between retrainings of streamrank-retrain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=1, help="threads torch may use")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"), help="folder for the reports")
    parser.add_argument("--img-dir", type=Path, default=Path("docs/img"), help="folder for the copied plots")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser.parse_args(argv)


def _machine(args: argparse.Namespace, argv: list[str] | None) -> str:
    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    command = " ".join(["python", "benchmarks/evaluate_all.py", *(sys.argv[1:] if argv is None else argv)])
    return "\n".join([
        f"- command: `{command}`",
        f"- machine: {os.cpu_count()} CPUs ({cpu}), torch {torch.__version__} on {torch.get_num_threads()} thread(s)",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
    ])


def _summary(log: str, report: Report) -> str:
    """Return a Markdown table per protocol: the @10 metrics and the seconds spent, per model."""
    lines = [f"### {log}: {report.n_events:,} events, {report.n_scored:,} scored, "
             f"{report.elapsed_s / 60:.1f} min in all"]
    for protocol in report.config["protocols"]:
        tallies = report.models[0].tallies[protocol]
        n_lists = tallies["overall"].n_events
        n_new_items = tallies["item/new"].n_events if "item/new" in tallies else 0
        lines += ["", f"Protocol `{protocol}`: {n_lists:,} scored events, {n_new_items / max(n_lists, 1):.0%} "
                  "of them for an item new to the stream, which no model can recommend.", "",
                  "| model | " + " | ".join(TABLE_KEYS) + " | train s | recommend s |",
                  "|---|" + "---:|" * (len(TABLE_KEYS) + 2)]
        for result in report.models:
            values = [result.metric(protocol, key) for key in TABLE_KEYS]
            cells = " | ".join("-" if value is None else f"{value:.4f}" for value in values)
            lines.append(f"| {result.name} | {cells} | {result.train_seconds:.1f} | "
                         f"{result.recommend_seconds + result.score_seconds:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

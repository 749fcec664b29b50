"""Choose the online ranker's settings on the warm-up part of each log only.

The comparison in ``evaluate_all.py`` scores the second half of each log. To
keep that half out of every choice, this script cuts each log to its first
half and runs the same prequential harness inside it: the first quarter of the
log warms up, the second quarter is scored. Each variant changes a few
fields of the ranker's, the trainer's or the serving config. The defaults were
chosen from the table it prints, one row per variant and log.

    python -m benchmarks.tune_online --data-dir ../shared/data --logs taobao yoochoose --jobs 2

Variants run in ``--jobs`` processes with one torch thread each.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.evaluate_all import LOGS
from models.baselines.catalog import MODEL_NAMES, ComparisonConfig, build_models
from models.evaluation import prequential
from models.ranker import RankerConfig
from models.recommender import RecommenderConfig
from models.trainer import TrainerConfig
from streams.evaluate_cli import load_stream

logger = logging.getLogger("benchmarks.tune_online")

# Variant name -> the fields that differ from the defaults, per config: "ranker"
# (RankerConfig), "trainer" (TrainerConfig) and "serving" (RecommenderConfig).
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "defaults": {},
    "lr-1e-3": {"trainer": {"learning_rate": 1e-3}},
    "lr-3e-3": {"trainer": {"learning_rate": 3e-3}},
    "lr-3e-2": {"trainer": {"learning_rate": 3e-2}},
    "no-repeat-bonus": {"ranker": {"repeat_bonus": False}},
    "no-transition-bonus": {"ranker": {"transition_bonus": False}},
    "no-bonus": {"ranker": {"repeat_bonus": False, "transition_bonus": False}},
    "bonus-lr-1": {"trainer": {"bonus_lr_multiplier": 1.0}},
    "bonus-lr-30": {"trainer": {"bonus_lr_multiplier": 30.0}},
    "followers-100": {"serving": {"followers_per_item": 100}},
    "window-1": {"serving": {"transition_window": 1}},
    "no-replay": {"trainer": {"replay_ratio": 0.0}},
    "negatives-1024": {"trainer": {"n_negatives": 1024}},
    "batch-32": {"trainer": {"batch_size": 32}},
    "dim-32": {"ranker": {"dim": 32}},
    "seq-len-20": {"ranker": {"max_seq_len": 20}},
}
METRICS = (("all", "NDCG@10"), ("all", "HR@10"), ("new_items", "NDCG@10"), ("new_items", "HR@10"))


def run_variant(log: str, variant: str, data_dir: Path, limit: int | None, seed: int) -> dict[str, Any]:
    """Score one variant, or a baseline named in :data:`MODEL_NAMES`, on the first half of one log.

    Returns its metrics and timings.
    """
    torch.set_num_threads(1)
    relative, fmt = LOGS[log]
    events = load_stream(fmt, data_dir / relative, limit=limit, n_events=0, seed=seed)
    tuning_part = events[: len(events) // 2]
    changes = VARIANTS.get(variant, {})
    config = ComparisonConfig(seed=seed, ranker=replace(RankerConfig(), **changes.get("ranker", {})),
                              trainer=replace(TrainerConfig(), **changes.get("trainer", {})),
                              serving=replace(RecommenderConfig(), **changes.get("serving", {})))
    model = variant if variant in MODEL_NAMES else "streamrank"
    start = time.perf_counter()
    report = prequential(tuning_part, build_models([model], config), warmup_fraction=0.5, seed=seed,
                         progress=False)
    result = report.models[0]
    return {
        "log": log,
        "variant": variant,
        "n_events": len(tuning_part),
        "metrics": {f"{key} {protocol}": result.metric(protocol, key) for protocol, key in METRICS},
        "train_s": result.train_seconds,
        "wall_s": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    jobs = [(log, variant) for log in args.logs for variant in args.variants]
    results: list[dict[str, Any]] = []
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_variant, log, variant, args.data_dir, args.limit, args.seed)
                   for log, variant in jobs]
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            results.append(result)
            elapsed = time.perf_counter() - start
            eta = elapsed / done * (len(jobs) - done)
            logger.info("variant finished log=%s variant=%s ndcg_all=%.4f ndcg_new=%.4f (%d/%d, %.0f s, ETA %.0f s)",
                        result["log"], result["variant"], result["metrics"]["NDCG@10 all"] or 0.0,
                        result["metrics"]["NDCG@10 new_items"] or 0.0, done, len(jobs), elapsed, eta)
    results.sort(key=lambda r: (args.logs.index(r["log"]), args.variants.index(r["variant"])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(_table(results))
    return 0


def _table(results: list[dict[str, Any]]) -> str:
    header = "| log | variant | " + " | ".join(f"{key} {protocol}" for protocol, key in METRICS) + " | train s |"
    lines = [header, "|---|---|" + "---:|" * (len(METRICS) + 1)]
    for result in results:
        cells = " | ".join("-" if value is None else f"{value:.4f}" for value in result["metrics"].values())
        lines.append(f"| {result['log']} | {result['variant']} | {cells} | {result['train_s']:.0f} |")
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder containing the logs' folders")
    parser.add_argument("--logs", nargs="+", choices=tuple(LOGS), default=["taobao", "yoochoose"])
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS) + MODEL_NAMES, default=list(VARIANTS),
                        help="ranker variants to try; a model name such as sknn runs that model for reference")
    parser.add_argument("--limit", type=int, help="use only the first N events of each log before halving it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="variants run at the same time")
    parser.add_argument("--out", type=Path, default=Path("reports/tuning.json"), help="file for the results")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())

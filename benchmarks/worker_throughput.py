"""Per-event cost of the worker's core, in process, with and without reasons.

Runs the same event-time-ordered slice of a log through ``Recommender.observe``
and ``Recommender.recommend`` (batches of ``--batch`` events, as the agent
takes them), training synchronously every ``batch_size`` examples, once with
reasons and once without, alternating chunks so both variants see the same
machine load. Kafka is not involved: this isolates scoring, reasons and
learning from the broker.

    .venv/bin/python benchmarks/worker_throughput.py ../shared/data/taobao-userbehavior-sample/UserBehavior_head.csv \
        --format taobao --limit 20000
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from models.ranker import RankerConfig
from models.recommender import Recommender, RecommenderConfig
from models.trainer import TrainerConfig
from state.sequences import SequenceStore
from streams.formats import load_events

CHUNK_EVENTS = 1_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--format", required=True)
    parser.add_argument("--limit", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=64, help="events scored per forward pass")
    args = parser.parse_args()

    torch.set_num_threads(1)
    events = load_events(args.path, args.format, limit=args.limit).events
    variants = {
        "with reasons": RecommenderConfig(explain_reasons=True),
        "without reasons": RecommenderConfig(explain_reasons=False),
    }
    recommenders = {
        name: Recommender(SequenceStore({}, 50), RankerConfig(), TrainerConfig(), config)
        for name, config in variants.items()
    }
    seconds = {name: {"observe_and_recommend": 0.0, "learn": 0.0} for name in variants}

    for start in range(0, len(events), CHUNK_EVENTS):
        chunk = events[start:start + CHUNK_EVENTS]
        for name, rec in recommenders.items():
            _run_chunk(rec, chunk, args.batch, seconds[name])
        done = start + len(chunk)
        print(f"\r{done:,}/{len(events):,} events", end="", flush=True)
    print()

    report = {}
    for name, spent in seconds.items():
        serve = spent["observe_and_recommend"]
        report[name] = {
            "events": len(events),
            "serve_s": round(serve, 2),
            "learn_s": round(spent["learn"], 2),
            "serve_events_per_s": round(len(events) / serve, 1),
            "model_version": recommenders[name].trainer.version,
        }
    with_r, without_r = report["with reasons"], report["without reasons"]
    report["serve_time_ratio_with_over_without"] = round(with_r["serve_s"] / without_r["serve_s"], 2)
    print(json.dumps(report, indent=2))


def _run_chunk(rec: Recommender, events: list, batch: int, spent: dict[str, float]) -> None:
    for start in range(0, len(events), batch):
        started = time.perf_counter()
        observations = [rec.observe(event) for event in events[start:start + batch]]
        rec.recommend(observations)
        spent["observe_and_recommend"] += time.perf_counter() - started

        started = time.perf_counter()
        while len(rec.pending) >= rec.trainer_config.batch_size:
            result, snapshot = rec.learn(rec.take_batch(), len(rec.vocabulary))
            rec.swap_scorer(result, snapshot)
        spent["learn"] += time.perf_counter() - started


if __name__ == "__main__":
    main()

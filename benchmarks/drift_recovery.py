"""Recovery after an injected concept drift, with and without the trainer's adaptation.

The stream is two seeded synthetic worlds back to back: the same users and
item ids, but from the change on, a second seed redraws every user's interest
clusters and every item's cluster and popularity, so what the model learned
about who likes what and which item follows which stops being true.

Both variants run the same prequential protocol as the worker, in process:
for each event, the user's list is computed before the event (test), scored
against its item, fed to the quality drift detector, and only then does the
recommender learn from the event (train), in micro-batches of 64 examples.
The only difference is ``RecommenderConfig.adapt_on_drift``.

    .venv/bin/python benchmarks/drift_recovery.py --events-per-world 15000 --out docs/img

Writes ``drift_recovery.png`` and ``drift_recovery.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from models.drift import QualityDriftMonitor
from models.ranker import RankerConfig
from models.recommender import Recommender, RecommenderConfig
from models.trainer import TrainerConfig
from state.sequences import SequenceStore
from streams.events import Event
from streams.synthetic import SyntheticConfig, generate
from streams.telemetry import EventScore

K = 10
WINDOW_EVENTS = 500


def drifting_stream(events_per_world: int, seed: int) -> tuple[list[Event], int]:
    """Return the two worlds back to back and the index of the first event after the change."""
    first = list(generate(SyntheticConfig(n_events=events_per_world, seed=seed)))
    start_ts = first[-1].ts + 30.0
    second = [
        replace(event, event_id="after-" + event.event_id)
        for event in generate(SyntheticConfig(n_events=events_per_world, seed=seed + 1, start_ts=start_ts))
    ]
    return first + second, len(first)


def run(events: list[Event], adapt: bool, progress: bool) -> dict:
    """Run the prequential protocol; return per-event hits, alarms and training time."""
    torch.manual_seed(0)
    recommender = Recommender(
        SequenceStore({}, 50), RankerConfig(), TrainerConfig(),
        RecommenderConfig(top_k=K, explain_reasons=False, adapt_on_drift=adapt),
    )
    monitor = QualityDriftMonitor()
    hits: list[float] = []
    alarms: list[dict] = []
    learn_s = 0.0
    label = "with adaptation" if adapt else "without adaptation"
    for index, event in enumerate(tqdm(events, desc=label, unit="event", disable=not progress)):
        sequence = recommender.store.get(event.user_id)
        items = []
        if len(sequence) and recommender.scorer_version >= recommender.config.min_model_version:
            items = [item.item_id for item in recommender.rank([sequence], K)[0]]
        if not items:
            items = [item for item, _ in recommender.popularity.top(K, exclude=sequence.purchased)]
        rank = items.index(event.item_id) + 1 if event.item_id in items else None
        score = EventScore(rank, K)
        hits.append(score.hit)
        for alarm in monitor.update_rank(score.reciprocal_rank, event.ts):
            alarms.append({"index": index, "detector": alarm.detector, "signal": alarm.signal})
            if alarm.signal == "reciprocal_rank":
                recommender.adapt_to_drift()

        recommender.observe(event)
        while len(recommender.pending) >= recommender.trainer_config.batch_size:
            started = time.perf_counter()
            result, snapshot = recommender.learn(recommender.take_batch(), len(recommender.vocabulary))
            recommender.swap_scorer(result, snapshot)
            learn_s += time.perf_counter() - started
            for alarm in monitor.update_loss(result.loss, event.ts):
                alarms.append({"index": index, "detector": alarm.detector, "signal": alarm.signal})
                recommender.adapt_to_drift()
    return {"hits": hits, "alarms": alarms, "learn_s": learn_s, "adaptations": recommender.stats.n_adaptations}


def rolling(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        out.append(total / min(index + 1, window))
    return out


def recovery_events(hits: list[float], change: int, window: int, fraction: float = 0.9) -> int | None:
    """Events after the change until rolling HR@K is back to ``fraction`` of its level just before it."""
    curve = rolling(hits, window)
    target = fraction * curve[change - 1]
    for index in range(change + window, len(curve)):
        if curve[index] >= target:
            return index - change
    return None


def summarize(result: dict, change: int) -> dict:
    hits = result["hits"]
    after = hits[change:]
    return {
        "hr_at_10_before_change": round(sum(hits[change - WINDOW_EVENTS:change]) / WINDOW_EVENTS, 4),
        "hr_at_10_first_2000_after": round(sum(after[:2000]) / min(2000, len(after)), 4),
        "hr_at_10_all_after": round(sum(after) / len(after), 4),
        "recovery_events_to_90pct": recovery_events(hits, change, WINDOW_EVENTS),
        "alarms": result["alarms"],
        "adaptations": result["adaptations"],
        "learn_s": round(result["learn_s"], 1),
    }


def plot(results: dict[str, dict], change: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for (name, result), color in zip(results.items(), ("tab:blue", "tab:orange")):
        ax.plot(rolling(result["hits"], WINDOW_EVENTS), label=name, color=color, linewidth=1.4)
        for alarm in result["alarms"]:
            if alarm["signal"] == "reciprocal_rank":
                ax.axvline(alarm["index"], color=color, linestyle=":", linewidth=1)
    ax.axvline(change, color="black", linestyle="--", linewidth=1, label="injected drift")
    ax.set_xlabel("event index (stream order)")
    ax.set_ylabel(f"HR@{K}, rolling mean of {WINDOW_EVENTS} events")
    ax.set_title("Recovery after a concept drift (dotted: ADWIN alarms on reciprocal rank)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-world", type=int, default=15_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()

    torch.set_num_threads(1)
    events, change = drifting_stream(args.events_per_world, args.seed)
    results = {
        "without adaptation": run(events, adapt=False, progress=True),
        "with adaptation": run(events, adapt=True, progress=True),
    }
    report = {
        "events": len(events),
        "change_index": change,
        "seed": args.seed,
        **{name: summarize(result, change) for name, result in results.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, change, args.out / "drift_recovery.png")
    (args.out / "drift_recovery.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

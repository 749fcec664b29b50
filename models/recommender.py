"""The recommender core: what happens to each event, without Kafka.

The worker's agents and the in-process tools call the same three steps, so a
change here changes both:

1. :meth:`Recommender.observe` updates the user's sequence and item
   popularity and queues a training example (prefix to next item).
2. :meth:`Recommender.recommend` scores a batch of users' current sequences
   with the latest model snapshot and returns their top-K recommendations.
3. :meth:`Recommender.learn` (on a worker thread) trains on queued examples and
   hands back a new snapshot, which :meth:`Recommender.swap_scorer` installs.

Scoring never learns: it only reads the snapshot. Shape letters: B batch,
L sequence length, D width, N vocabulary rows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from models.explain import POPULAR_NOW, CoVisitation, Reason, explain_batch
from models.ranker import EVENT_TYPE_IDS, RankerConfig, SequentialRanker, pad_sequences
from models.trainer import Example, LearnResult, OnlineTrainer, TrainerConfig
from models.transitions import Transitions, batch_followers
from state.sequences import SequenceStore, UserSequence
from state.vocabulary import EVENT_TYPE_WEIGHTS, ItemVocabulary, Popularity
from streams.events import Event

__all__ = ["Recommendation", "ScoredItem", "Recommender", "RecommenderConfig", "Observation"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecommenderConfig:
    """Settings of serving, reasons, drift reaction, and the limit on examples waiting for training."""

    top_k: int = 10
    # Examples waiting for the trainer beyond this are dropped oldest first,
    # so a trainer slower than the stream falls behind without using more memory.
    max_pending_examples: int = 5_000
    popularity_half_life_s: float = 6 * 3600.0
    # The ranker serves only after this many optimizer steps; popular-now before.
    min_model_version: int = 1
    # Attach a reason to each recommended item. Ranker reasons cost encoding
    # (max_occluded_items + 1) sequences per user, batched across users.
    explain_reasons: bool = True
    max_occluded_items: int = 5
    # Reaction to a quality drift alarm: train the next adapt_steps steps at
    # adapt_lr_multiplier times the learning rate, replaying adapt_replay_ratio
    # old examples per new one, so the model follows the new data sooner.
    adapt_on_drift: bool = True
    adapt_lr_multiplier: float = 3.0
    adapt_steps: int = 100
    adapt_replay_ratio: float = 0.0
    # Followers listed per recent item for the ranker's transition bonus.
    followers_per_item: int = 30
    # Each event counts as a follower of the user's last transition_window
    # distinct items, the one d steps back with weight 1 / d.
    transition_window: int = 5


@dataclass(frozen=True)
class ScoredItem:
    item_id: str
    score: float
    reason: Reason | None = None


@dataclass(frozen=True)
class Recommendation:
    """A ranked list published for a user after one of their events."""

    user_id: str
    items: list[ScoredItem]
    model_version: int
    source: str  # "ranker" or "popular"
    event_id: str
    event_ts: float
    published_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "items": [
                {
                    "item_id": item.item_id,
                    "score": round(item.score, 6),
                    "reason": None if item.reason is None else item.reason.to_dict(),
                }
                for item in self.items
            ],
            "model_version": self.model_version,
            "source": self.source,
            "event_id": self.event_id,
            "ts": self.event_ts,
            "published_at": self.published_at,
        }


@dataclass(frozen=True)
class Observation:
    """The result of :meth:`Recommender.observe` for one event."""

    event: Event
    before: UserSequence
    after: UserSequence
    appended: bool


@dataclass
class _Stats:
    n_events: int = 0
    n_duplicates: int = 0
    n_examples: int = 0
    n_examples_dropped: int = 0
    n_recommendations: int = 0
    n_from_ranker: int = 0
    n_trained: int = 0
    n_adaptations: int = 0
    last_learn: LearnResult | None = None
    learn_ms_total: float = 0.0


class Recommender:
    """Sequences, vocabulary, popularity, the trainer and the serving snapshot.

    ``observe`` and ``recommend`` run on the event loop; ``learn`` runs on one
    worker thread at a time and touches only the trainer's own model.
    """

    def __init__(
        self,
        store: SequenceStore,
        ranker_config: RankerConfig,
        trainer_config: TrainerConfig,
        config: RecommenderConfig | None = None,
        vocabulary: ItemVocabulary | None = None,
    ) -> None:
        self.config = config or RecommenderConfig()
        self.store = store
        self.ranker_config = ranker_config
        self.trainer_config = trainer_config
        self.vocabulary = vocabulary or ItemVocabulary()
        self.popularity = Popularity(self.config.popularity_half_life_s)
        self.covisitation = CoVisitation()
        self.transitions = Transitions()
        self.trainer = OnlineTrainer(SequentialRanker(ranker_config), trainer_config)
        self.scorer = self.trainer.snapshot()
        self.scorer_version = self.trainer.version
        self.pending: deque[Example] = deque()
        self.stats = _Stats()
        self.learn_lock = threading.Lock()

    def observe(self, event: Event) -> Observation:
        """Add ``event`` to state and queue its training example.

        Steps, in this order so the example's prefix never contains its own target:
        1. append the event to the user's stored sequence (skipped for a redelivered event_id);
        2. give the item a vocabulary row and count it in popularity;
        3. queue the example "sequence before the event -> this item" when the
           user had a sequence before.
        """
        before, after, appended = self.store.append(event)
        self.stats.n_events += 1
        if not appended:
            self.stats.n_duplicates += 1
            return Observation(event, before, after, appended=False)

        target = self.vocabulary.add(event.item_id)
        self.popularity.update(event.item_id, event.ts, EVENT_TYPE_WEIGHTS[event.type])
        if event.type == "purchase":
            previous = next((item for item in reversed(before.items) if item != event.item_id), None)
            if previous is not None:
                self.covisitation.update(previous, event.item_id)

        if len(before):
            prefix = tuple(self.vocabulary.add(item) for item in before.items)
            counting = self.ranker_config.transition_bonus
            # Followers are read before this event is counted, as they were when it was scored.
            followers = self.transitions.followers(prefix, self.config.followers_per_item) if counting else None
            self._queue(Example(
                item_seq=prefix,
                type_seq=tuple(EVENT_TYPE_IDS[t] for t in before.types),
                target=target,
                followers=followers,
            ))
            if counting:
                self._count_transitions(prefix, target)
        return Observation(event, before, after, appended=True)

    def _count_transitions(self, prefix: tuple[int, ...], target: int) -> None:
        """Count ``target`` after the prefix's last ``transition_window`` distinct rows, the d-th most recent by 1 / d."""
        recent: list[int] = []
        for row in reversed(prefix):
            if row in recent:
                continue
            recent.append(row)
            self.transitions.update(row, target, 1.0 / len(recent))
            if len(recent) == self.config.transition_window:
                break

    def recommend(self, observations: list[Observation], now: float | None = None) -> list[Recommendation]:
        """Return each observed user's top K from the serving snapshot.

        Users without history, and every user before the ranker has trained
        ``min_model_version`` steps, get the popular-now list. Purchased items
        are excluded in both cases.
        """
        now = time.time() if now is None else now
        use_ranker = self.scorer_version >= self.config.min_model_version
        ranked = [obs for obs in observations if use_ranker and len(obs.after)]
        ranker_items = self.rank([obs.after for obs in ranked]) if ranked else []
        by_id = {id(obs): items for obs, items in zip(ranked, ranker_items)}

        if self.config.explain_reasons:
            popular_now = {item for item, _ in self.popularity.top(self.config.top_k)}
            by_id = self._with_reasons(ranked, by_id, popular_now)
        out = []
        for obs in observations:
            items = by_id.get(id(obs))
            source = "ranker" if items else "popular"
            if not items:
                top = self.popularity.top(self.config.top_k, exclude=obs.after.purchased)
                reason = POPULAR_NOW if self.config.explain_reasons else None
                items = [ScoredItem(item, score, reason) for item, score in top]
            out.append(Recommendation(
                user_id=obs.event.user_id,
                items=items,
                model_version=self.scorer_version,
                source=source,
                event_id=obs.event.event_id,
                event_ts=obs.event.ts,
                published_at=now,
            ))
        self.stats.n_recommendations += len(out)
        self.stats.n_from_ranker += len(ranked)
        return out

    def _with_reasons(
        self, ranked: list[Observation], by_id: dict[int, list[ScoredItem]], popular_now: set[str]
    ) -> dict[int, list[ScoredItem]]:
        """Return a copy of ``by_id`` with a reason on every item, from one :func:`explain_batch` call."""
        explained = [obs for obs in ranked if by_id.get(id(obs))]
        reasons = explain_batch(
            self.scorer,
            self.vocabulary,
            [(obs.after.items, obs.after.types) for obs in explained],
            [[item.item_id for item in by_id[id(obs)]] for obs in explained],
            covisitation=self.covisitation,
            popular_items=popular_now,
            max_occluded_items=self.config.max_occluded_items,
            transitions=self.transitions,
            followers_per_item=self.config.followers_per_item,
        )
        out = dict(by_id)
        for obs, user_reasons in zip(explained, reasons):
            out[id(obs)] = [
                ScoredItem(item.item_id, item.score, reason) for item, reason in zip(by_id[id(obs)], user_reasons)
            ]
        return out

    def adapt_to_drift(self) -> bool:
        """React to a quality drift alarm as configured; return True when the trainer adapts."""
        if not self.config.adapt_on_drift:
            return False
        self.trainer.adapt(self.config.adapt_lr_multiplier, self.config.adapt_steps, self.config.adapt_replay_ratio)
        self.stats.n_adaptations += 1
        return True

    def restore(self, model_state: dict[str, torch.Tensor], version: int) -> None:
        """Replace the trainer and the serving snapshot with saved weights (no optimizer state)."""
        model = SequentialRanker.from_state_dict(self.ranker_config, model_state)
        with self.learn_lock:
            self.trainer = OnlineTrainer(model, self.trainer_config)
            self.trainer.version = version
            self.scorer = self.trainer.snapshot()
            self.scorer_version = version

    def take_batch(self, max_size: int | None = None) -> list[Example]:
        """Remove and return up to ``max_size`` (default: the trainer's batch size) queued examples."""
        size = self.trainer_config.batch_size if max_size is None else max_size
        batch = []
        while self.pending and len(batch) < size:
            batch.append(self.pending.popleft())
        return batch

    def learn(self, batch: list[Example], n_items: int) -> tuple[LearnResult, SequentialRanker]:
        """Train one step on ``batch`` and return the result with a fresh serving snapshot.

        Runs on a worker thread. ``n_items`` is the vocabulary size when the
        batch was taken, so every row in it is below ``n_items``.
        """
        with self.learn_lock:
            result = self.trainer.learn(batch, n_items)
            snapshot = self.trainer.snapshot()
        return result, snapshot

    def swap_scorer(self, result: LearnResult, snapshot: SequentialRanker) -> None:
        """Install a snapshot returned by :meth:`learn`; call it on the event loop."""
        self.scorer = snapshot
        self.scorer_version = self.trainer.version
        self.stats.last_learn = result
        self.stats.n_trained += result.n_examples
        self.stats.learn_ms_total += result.elapsed_ms

    def follower_inputs(
        self, sequences: list[UserSequence], n_rows: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Return the transition-bonus inputs of ``sequences`` for rows below ``n_rows``; None when the bonus is off."""
        if not self.ranker_config.transition_bonus:
            return None
        max_len = self.ranker_config.max_seq_len
        followers = []
        for seq in sequences:
            rows = [row for item in seq.items[-max_len:] if (row := self.vocabulary.row(item)) is not None]
            followers.append(self.transitions.followers(rows, self.config.followers_per_item))
        return batch_followers(followers, n_rows)

    def _queue(self, example: Example) -> None:
        self.pending.append(example)
        self.stats.n_examples += 1
        while len(self.pending) > self.config.max_pending_examples:
            self.pending.popleft()
            self.stats.n_examples_dropped += 1

    @torch.no_grad()
    def rank(
        self,
        sequences: list[UserSequence],
        k: int | None = None,
        exclude: list[set[str]] | None = None,
    ) -> list[list[ScoredItem]]:
        """Return the serving snapshot's top ``k`` items for each sequence, best first.

        Excluded per user: their purchases, and ``exclude[b]`` when given (the
        evaluation harness passes seen items there). A sequence with no item
        the snapshot has an embedding for gets an empty list, and the caller falls back to
        popular-now. Scoring only reads the snapshot: it never learns.
        """
        k = self.config.top_k if k is None else k
        model = self.scorer
        n_rows = min(len(self.vocabulary), model.item_capacity)
        max_len = self.ranker_config.max_seq_len
        item_seqs, type_seqs = [], []
        for seq in sequences:
            rows = [self.vocabulary.add(item) for item in seq.items[-max_len:]]
            # Items newer than the snapshot have no trained embedding yet: leave them out.
            kept = [(row, EVENT_TYPE_IDS[t]) for row, t in zip(rows, seq.types[-max_len:]) if row < n_rows]
            item_seqs.append([row for row, _ in kept])
            type_seqs.append([type_id for _, type_id in kept])
        # Positions count from each sequence's oldest item, so padding only to the
        # longest sequence of the batch gives the same scores for less work.
        pad_len = max(1, max(len(seq) for seq in item_seqs))
        log_seqs, type_tensor = pad_sequences(item_seqs, type_seqs, pad_len)  # (B, L)
        logits = model.score(log_seqs, type_tensor, followers=self.follower_inputs(sequences, n_rows))
        logits = logits[:, :n_rows]  # (B, N)
        logits[:, 0] = -torch.inf
        for b, seq in enumerate(sequences):
            excluded = set(seq.purchased)
            if exclude is not None:
                excluded |= exclude[b]
            for item in excluded:
                row = self.vocabulary.row(item)
                if row is not None and row < n_rows:
                    logits[b, row] = -torch.inf
        k = min(k, n_rows - 1)
        if k <= 0:
            return [[] for _ in sequences]
        scores, rows = torch.topk(logits, k, dim=1)  # (B, K)
        out: list[list[ScoredItem]] = []
        for b in range(len(sequences)):
            if not item_seqs[b]:
                out.append([])
                continue
            out.append([
                ScoredItem(self.vocabulary.item_id(int(row)), float(score))
                for score, row in zip(scores[b].tolist(), rows[b].tolist())
                if score != -float("inf")
            ])
        return out

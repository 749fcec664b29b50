"""The streamrank ranker under the model contract, online and as two batch-trained references.

:class:`StreamrankRanker` wraps :class:`models.recommender.Recommender` over a
plain dict and trains it the way the worker does, one micro-batch at a time.
Training here is synchronous. After each event, whenever ``batch_size``
examples are queued, one optimizer step runs, and its snapshot serves the
next request.

The two references use the same architecture and state, but other training:

- :class:`FrozenRanker` trains from scratch on the warm-up part for several
  epochs, then never changes its weights (its sequences still update);
- :class:`RetrainedRanker` also retrains from scratch on every example seen
  so far each ``retrain_every`` events after warm-up. That is the costly
  upper bound that online learning tries to approach at a fraction of its
  compute, which ``train_seconds`` shows.

Shape letters: L sequence length, D width, C candidates.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import Any

import torch

from models.baselines.base import BaseModel
from models.ranker import EVENT_TYPE_IDS, RankerConfig, SequentialRanker, pad_sequences
from models.recommender import Recommender, RecommenderConfig
from models.trainer import Example, OnlineTrainer, TrainerConfig
from state.sequences import SequenceStore, UserSequence
from streams.events import Event

__all__ = ["FrozenRanker", "RetrainedRanker", "StreamrankRanker", "fit_ranker"]

DEFAULT_EPOCHS = 2
DEFAULT_FIT_BATCH_SIZE = 128


class StreamrankRanker(BaseModel):
    """The online ranker: score with the latest snapshot, then learn each micro-batch as it fills.

    Requests for users without history, and all requests before the ranker
    has taken ``config.min_model_version`` steps, get popular-now items, as
    in :meth:`models.recommender.Recommender.recommend`. Purchased items are
    always excluded, in the ``all`` protocol too. A list the ranker leaves
    shorter than ``k`` ends with popular-now items.
    """

    name = "streamrank"

    def __init__(
        self,
        ranker_config: RankerConfig,
        trainer_config: TrainerConfig,
        config: RecommenderConfig | None = None,
    ) -> None:
        super().__init__()
        store = SequenceStore({}, ranker_config.max_seq_len)
        self.recommender = Recommender(store, ranker_config, trainer_config, config)

    def adapt_to_drift(self) -> bool:
        """React to a quality drift alarm as the worker does; return True when the trainer adapts."""
        return self.recommender.adapt_to_drift()

    def recommend(self, user_id: str, k: int, exclude: AbstractSet[str]) -> list[str]:
        return self.recommend_lists(user_id, k, [exclude])[0]

    def recommend_lists(self, user_id: str, k: int, excludes: Sequence[AbstractSet[str]]) -> list[list[str]]:
        """Return one list per exclusion set, from one batched forward pass over copies of the sequence."""
        recommender = self.recommender
        sequence = recommender.store.get(user_id)
        ranked: list[list[str]] = [[] for _ in excludes]
        if self._serves_ranker(sequence):
            scored = recommender.rank([sequence] * len(excludes), k, exclude=[set(ex) for ex in excludes])
            ranked = [[item.item_id for item in items] for items in scored]
        return [self._fill(items, k, exclude, sequence) for items, exclude in zip(ranked, excludes)]

    @torch.no_grad()
    def score(self, user_id: str, items: Sequence[str]) -> list[float]:
        """Return the snapshot's logit for each item; -inf for items the snapshot has no row for.

        Where :meth:`recommend` would fall back to popular-now, returns
        popular-now scores instead.
        """
        recommender = self.recommender
        sequence = recommender.store.get(user_id)
        model = recommender.scorer
        n_rows = min(len(recommender.vocabulary), model.item_capacity)
        log_seqs, type_seqs = self._encode_inputs(sequence, n_rows)
        if not self._serves_ranker(sequence) or log_seqs is None:
            return [recommender.popularity.score(item) for item in items]
        rows = [recommender.vocabulary.row(item) for item in items]
        known = [row is not None and 0 < row < n_rows for row in rows]
        candidates = torch.tensor([[row if ok else 0 for row, ok in zip(rows, known)]])  # (1, C)
        followers = recommender.follower_inputs([sequence], n_rows)
        logits = model.score(log_seqs, type_seqs, candidates, followers)[0].tolist()  # (C,)
        return [logit if ok else -float("inf") for logit, ok in zip(logits, known)]

    def describe(self) -> dict[str, Any]:
        recommender = self.recommender
        return {
            "ranker": recommender.ranker_config.to_dict(),
            "trainer": recommender.trainer_config.to_dict(),
            "top_k": recommender.config.top_k,
            "popularity_half_life_s": recommender.config.popularity_half_life_s,
            "min_model_version": recommender.config.min_model_version,
            "adapt_on_drift": recommender.config.adapt_on_drift,
            "adaptations": recommender.stats.n_adaptations,
            "scorer_version": recommender.scorer_version,
            "n_examples": recommender.stats.n_examples,
            "n_examples_dropped": recommender.stats.n_examples_dropped,
        }

    def _learn(self, event: Event) -> None:
        recommender = self.recommender
        recommender.observe(event)
        while len(recommender.pending) >= recommender.trainer_config.batch_size:
            result, snapshot = recommender.learn(recommender.take_batch(), len(recommender.vocabulary))
            recommender.swap_scorer(result, snapshot)

    def _serves_ranker(self, sequence: UserSequence) -> bool:
        recommender = self.recommender
        return len(sequence) > 0 and recommender.scorer_version >= recommender.config.min_model_version

    def _fill(self, items: list[str], k: int, exclude: AbstractSet[str], sequence: UserSequence) -> list[str]:
        if len(items) >= k:
            return items
        blocked = set(exclude) | set(sequence.purchased) | set(items)
        fill = self.recommender.popularity.top(k - len(items), exclude=blocked)
        return items + [item for item, _ in fill]

    def _encode_inputs(self, sequence: UserSequence, n_rows: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Pad the sequence's known rows to (1, L), as ``Recommender.rank`` does; None when none is known."""
        vocabulary = self.recommender.vocabulary
        max_len = self.recommender.ranker_config.max_seq_len
        kept = []
        for item, event_type in zip(sequence.items[-max_len:], sequence.types[-max_len:]):
            row = vocabulary.row(item)
            if row is not None and row < n_rows:
                kept.append((row, EVENT_TYPE_IDS[event_type]))
        log_seqs, type_seqs = pad_sequences([[row for row, _ in kept]], [[t for _, t in kept]], max_len)  # (1, L)
        return (log_seqs if kept else None), type_seqs


class FrozenRanker(StreamrankRanker):
    """The ranker trained from scratch on the warm-up part for ``n_epochs``, then frozen.

    Until the end of warm-up it only collects examples, so requests before
    then get popular-now items. After it, events still extend the users'
    sequences, which are the model's input, but never change its weights.
    """

    name = "streamrank-frozen"

    def adapt_to_drift(self) -> bool:
        return False  # its weights change only when it refits, which adaptation does not touch

    def __init__(
        self,
        ranker_config: RankerConfig,
        trainer_config: TrainerConfig,
        config: RecommenderConfig | None = None,
        n_epochs: int = DEFAULT_EPOCHS,
        fit_batch_size: int = DEFAULT_FIT_BATCH_SIZE,
    ) -> None:
        super().__init__(ranker_config, trainer_config, config)
        if n_epochs < 1 or fit_batch_size < 1:
            raise ValueError(f"invalid n_epochs {n_epochs} or fit_batch_size {fit_batch_size}: expected both >= 1")
        self.n_epochs = n_epochs
        self.fit_batch_size = fit_batch_size
        self.examples: list[Example] = []
        self.n_fits = 0
        self._frozen = False

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "n_epochs": self.n_epochs, "fit_batch_size": self.fit_batch_size,
                "n_fits": self.n_fits}

    def _learn(self, event: Event) -> None:
        recommender = self.recommender
        recommender.observe(event)
        queued = recommender.take_batch(len(recommender.pending))
        if not self._frozen:
            self.examples.extend(queued)

    def _end_warmup(self) -> None:
        self._refit()
        self._frozen = True
        self.examples = []

    def _refit(self) -> None:
        """Train a new ranker on every collected example and serve it."""
        recommender = self.recommender
        if not self.examples:
            return
        trainer = fit_ranker(
            self.examples, len(recommender.vocabulary), recommender.ranker_config, recommender.trainer_config,
            self.n_epochs, self.fit_batch_size,
        )
        recommender.restore(trainer.model.state_dict(), trainer.version)
        self.n_fits += 1


class RetrainedRanker(FrozenRanker):
    """The ranker retrained from scratch on all past examples at warm-up end and every ``retrain_every`` events.

    Between retrainings its weights stay fixed, like :class:`FrozenRanker`.
    """

    name = "streamrank-retrain"

    def __init__(
        self,
        ranker_config: RankerConfig,
        trainer_config: TrainerConfig,
        config: RecommenderConfig | None = None,
        n_epochs: int = DEFAULT_EPOCHS,
        fit_batch_size: int = DEFAULT_FIT_BATCH_SIZE,
        retrain_every: int = 20_000,
    ) -> None:
        super().__init__(ranker_config, trainer_config, config, n_epochs, fit_batch_size)
        if retrain_every < 1:
            raise ValueError(f"invalid retrain_every {retrain_every}: expected a number of events >= 1")
        self.retrain_every = retrain_every
        self._warm = False
        self._events_since_fit = 0

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "retrain_every": self.retrain_every}

    def _learn(self, event: Event) -> None:
        recommender = self.recommender
        recommender.observe(event)
        self.examples.extend(recommender.take_batch(len(recommender.pending)))
        if not self._warm:
            return
        self._events_since_fit += 1
        if self._events_since_fit >= self.retrain_every:
            self._refit()
            self._events_since_fit = 0

    def _end_warmup(self) -> None:
        self._refit()
        self._warm = True


def fit_ranker(
    examples: Sequence[Example],
    n_items: int,
    ranker_config: RankerConfig,
    trainer_config: TrainerConfig,
    n_epochs: int,
    batch_size: int,
) -> OnlineTrainer:
    """Train a new ranker on ``examples`` for ``n_epochs`` shuffled epochs and return its trainer.

    Uses ``trainer_config`` with replay off and ``batch_size`` examples per
    step. The shuffle is seeded by ``trainer_config.seed``, so the same
    examples give the same weights. ``n_items`` is the vocabulary size,
    padding row included.
    """
    config = replace(trainer_config, batch_size=batch_size, replay_capacity=0)
    trainer = OnlineTrainer(SequentialRanker(ranker_config), config)
    order = list(range(len(examples)))
    rng = random.Random(trainer_config.seed)
    for _ in range(n_epochs):
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            trainer.learn([examples[i] for i in order[start:start + batch_size]], n_items)
    return trainer

"""The online trainer: one optimizer step per micro-batch of next-item examples.

An example is a user's prefix (item rows, oldest first) and the row of the
item that came next. The ranker encodes the prefix, takes the hidden state at
the most recent position and scores the target against the items of its own
prefix, the items that followed its recent items (see :mod:`models.transitions`)
and negatives drawn uniformly from the known rows (sampled softmax). The
first two are always candidates, so the ranker's repeat and transition
bonuses learn how much such an item should win over the rest of the
catalogue. A log-Q correction weights each uniform draw for the rows it
represents.

Each step also replays older examples from a reservoir sample of the stream,
which keeps the model from forgetting items that have gone quiet.

Shape letters: B batch, L sequence length, D width, E follower entries,
A = L + E rows always among the candidates, S uniform negatives, C candidates
per example (the target, A and S).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.ranker import SequentialRanker, pad_sequences
from models.transitions import Followers, batch_followers

__all__ = ["Example", "LearnResult", "OnlineTrainer", "TrainerConfig"]

MAX_SEED = 2**63 - 1
# Parameter names of the ranker's bonus scalars, trained at bonus_lr_multiplier.
BONUS_PREFIXES = ("repeat_", "transition_", "logit_scale")


@dataclass(frozen=True)
class TrainerConfig:
    """Optimizer, sampling and replay settings of an :class:`OnlineTrainer`.

    ``batch_size`` and ``max_batch_wait_ms`` are read by the caller that groups
    examples into micro-batches: a batch is handed to :meth:`OnlineTrainer.learn`
    when it contains ``batch_size`` examples or its oldest example has waited
    ``max_batch_wait_ms`` milliseconds. ``learn`` itself accepts any size.
    ``replay_ratio`` is the number of replayed examples per new example, and a
    ``replay_capacity`` of 0 turns replay off. ``grad_clip_norm`` bounds the
    global L2 norm of the gradient.
    """

    learning_rate: float = 1e-2
    weight_decay: float = 0.0
    batch_size: int = 64
    max_batch_wait_ms: int = 200
    n_negatives: int = 256
    replay_capacity: int = 20_000
    replay_ratio: float = 0.5
    grad_clip_norm: float = 1.0
    # The ranker's repeat and transition bonuses and its logit scale are a few
    # scalars, and Adam moves each by about one learning rate per step. So they
    # train this many times faster, to settle within a few hundred steps.
    bonus_lr_multiplier: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_number("learning_rate", self.learning_rate, minimum=0.0, inclusive=False)
        _check_number("weight_decay", self.weight_decay, minimum=0.0)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("max_batch_wait_ms", self.max_batch_wait_ms, minimum=0)
        _check_int("n_negatives", self.n_negatives, minimum=1)
        _check_int("replay_capacity", self.replay_capacity, minimum=0)
        _check_number("replay_ratio", self.replay_ratio, minimum=0.0)
        _check_number("grad_clip_norm", self.grad_clip_norm, minimum=0.0, inclusive=False)
        _check_number("bonus_lr_multiplier", self.bonus_lr_multiplier, minimum=0.0, inclusive=False)
        _check_int("seed", self.seed, minimum=0, maximum=MAX_SEED)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainerConfig:
        """Build a config from :meth:`to_dict` output; missing keys take their defaults.

        Raises ValueError for keys that are not fields.
        """
        allowed = [field.name for field in fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise ValueError(f"unknown TrainerConfig keys {unknown}: expected only {', '.join(allowed)}")
        return cls(**d)


@dataclass(frozen=True)
class Example:
    """One training example: a prefix of item rows and event types, and the next item's row.

    ``weight`` scales the example's loss, for example to count a purchase more
    than a view. ``followers`` are the transition counts of the prefix's
    recent items at the time the example was made, before its own
    target was counted, so the transition bonus never learns from a count
    that already includes the answer.
    """

    item_seq: tuple[int, ...]
    type_seq: tuple[int, ...]
    target: int
    weight: float = 1.0
    followers: Followers | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.item_seq) != len(self.type_seq):
            raise ValueError(
                f"invalid Example: {len(self.item_seq)} items but {len(self.type_seq)} event types; "
                "expected one event type per item"
            )
        if not self.item_seq:
            raise ValueError("invalid Example: item_seq is empty; a prefix needs at least one item")
        if isinstance(self.target, bool) or not isinstance(self.target, int) or self.target < 1:
            raise ValueError(f"invalid Example.target {self.target!r}: expected an item row of at least 1")
        if not math.isfinite(self.weight) or self.weight < 0:
            raise ValueError(f"invalid Example.weight {self.weight!r}: expected a finite number >= 0")


@dataclass(frozen=True)
class LearnResult:
    """The outcome of one :meth:`OnlineTrainer.learn` step.

    ``loss`` is the weighted sampled-softmax loss of the batch before the step.
    """

    loss: float
    n_examples: int
    n_replayed: int
    elapsed_ms: float


class OnlineTrainer:
    """Train a :class:`SequentialRanker` in place, one micro-batch at a time, with AdamW.

    ``learn`` is meant to run on a worker thread so the event loop does not
    block. The trainer is not thread-safe: call ``learn``, ``loss_on`` and
    ``snapshot`` from one thread at a time, and never score with
    ``trainer.model`` while it trains. Hand weights to scorers with
    :meth:`snapshot`, which returns an independent copy.

    Every random draw (negatives, replay, dropout) comes from generators seeded
    by ``config.seed``, so the same config, model and batches give the same
    weights. torch's global random state is left as it was.

    NOTE: only the CPU random state is seeded for dropout. A model on a GPU
    draws its dropout masks from the unseeded CUDA generator.
    """

    def __init__(self, model: SequentialRanker, config: TrainerConfig) -> None:
        self.model = model
        self.config = config
        self.version = 0  # optimizer steps taken
        bonus = [param for name, param in model.named_parameters() if name.startswith(BONUS_PREFIXES)]
        rest = [param for name, param in model.named_parameters() if not name.startswith(BONUS_PREFIXES)]
        groups = [{"params": rest, "lr_scale": 1.0}]
        if bonus:
            groups.append({"params": bonus, "lr_scale": config.bonus_lr_multiplier})
        self._optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
        self._item_param = model.item_emb.weight
        self._generator = torch.Generator().manual_seed(config.seed)  # negatives and dropout seeds
        self._adapt_steps_left = 0
        self._adapt_lr_multiplier = 1.0
        self._adapt_replay_ratio = config.replay_ratio
        self._rng = random.Random(config.seed)
        self._reservoir: list[Example] = []
        self._n_seen = 0

    @property
    def reservoir_size(self) -> int:
        """Number of examples held for replay, at most ``config.replay_capacity``."""
        return len(self._reservoir)

    def learn(self, examples: Sequence[Example], n_items: int) -> LearnResult:
        """Take one optimizer step on ``examples`` plus replayed ones and return the result.

        ``n_items`` is the number of known item rows, padding included: targets
        and negatives come from rows 1 .. n_items-1. Raises ValueError when
        ``examples`` is empty, ``n_items`` is below 2, an example uses a row
        at or above ``n_items``, or every example has weight 0.

        Steps, in this order:
        1. grow the model to ``n_items`` rows and move the optimizer state to
           the new embedding, so the step can update new items;
        2. draw replayed examples before the new ones enter the reservoir, so
           no example appears twice in one step;
        3. compute the loss, clip the gradient and step;
        4. add the new examples to the reservoir.
        """
        start = time.perf_counter()
        self._check_examples(examples, n_items)
        self._ensure_capacity(n_items)

        adapting = self._adapt_steps_left > 0
        replay_ratio = self._adapt_replay_ratio if adapting else self.config.replay_ratio
        multiplier = self._adapt_lr_multiplier if adapting else 1.0
        for group in self._optimizer.param_groups:
            group["lr"] = self.config.learning_rate * multiplier * group["lr_scale"]
        if adapting:
            self._adapt_steps_left -= 1

        replayed = self._draw_replay(len(examples), replay_ratio)
        batch = list(examples) + replayed

        self.model.train()
        self._optimizer.zero_grad(set_to_none=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self._generator)))  # dropout masks
            loss = self._loss(batch, n_items, self._generator)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip_norm)
        self._optimizer.step()
        # Dropping the gradients keeps snapshot() from copying them.
        self._optimizer.zero_grad(set_to_none=True)
        self.version += 1

        for example in examples:
            self._add_to_reservoir(example)
        return LearnResult(
            loss=float(loss.detach()),
            n_examples=len(examples),
            n_replayed=len(replayed),
            elapsed_ms=(time.perf_counter() - start) * 1000.0,
        )

    def adapt(self, lr_multiplier: float, n_steps: int, replay_ratio: float | None = None) -> None:
        """Train the next ``n_steps`` steps at ``lr_multiplier`` times the learning rate.

        ``replay_ratio``, when given, replaces the configured ratio for those
        steps: a lower one makes the model follow recent data faster after a
        drift. A second call restarts the count. Safe to call from another
        thread than the one running ``learn``: a step reads these values once.
        """
        if not lr_multiplier > 0:
            raise ValueError(f"lr_multiplier must be positive, got {lr_multiplier}")
        if n_steps < 0:
            raise ValueError(f"n_steps must be at least 0, got {n_steps}")
        if replay_ratio is not None and replay_ratio < 0:
            raise ValueError(f"replay_ratio must be at least 0, got {replay_ratio}")
        self._adapt_lr_multiplier = lr_multiplier
        self._adapt_replay_ratio = self.config.replay_ratio if replay_ratio is None else replay_ratio
        self._adapt_steps_left = n_steps

    @property
    def adapting(self) -> bool:
        """True while steps requested by :meth:`adapt` remain."""
        return self._adapt_steps_left > 0

    def loss_on(self, examples: Sequence[Example], n_items: int) -> float:
        """Return the loss ``learn`` would report on ``examples``, without replay or a step.

        Runs in eval mode (no dropout) with negatives from a generator seeded by
        ``config.seed`` on every call, so repeated calls on unchanged weights
        return the same value. Grows the model to ``n_items`` like ``learn``.
        """
        self._check_examples(examples, n_items)
        self._ensure_capacity(n_items)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                loss = self._loss(list(examples), n_items, torch.Generator().manual_seed(self.config.seed))
        finally:
            self.model.train(was_training)
        return float(loss)

    def snapshot(self) -> SequentialRanker:
        """Return a deep copy of the model in eval mode, with gradients off, for scoring elsewhere."""
        model = copy.deepcopy(self.model)
        model.eval()
        model.requires_grad_(False)
        return model

    def _loss(self, batch: list[Example], n_items: int, generator: torch.Generator) -> Tensor:
        device = self.model.item_emb.weight.device
        items, types = pad_sequences(
            [list(example.item_seq) for example in batch],
            [list(example.type_seq) for example in batch],
            self.model.config.max_seq_len,
        )  # (B, L)
        items, types = items.to(device), types.to(device)
        targets = torch.tensor([example.target for example in batch], device=device)  # (B,)
        weights = torch.tensor([example.weight for example in batch], device=device)  # (B,)
        followers = None
        follower_rows = torch.zeros(len(batch), 0, dtype=torch.long, device=device)  # (B, E)
        if self.model.config.transition_bonus and any(example.followers is not None for example in batch):
            followers = batch_followers([example.followers for example in batch], n_items)
            follower_rows = followers[0].to(device)
        n_sampled = self.config.n_negatives
        negatives = torch.randint(1, n_items, (len(batch), n_sampled), generator=generator).to(device)  # (B, S)
        # Candidates: the target, then the rows every example always competes
        # with (its own items and the followers of its recent items), then
        # uniform negatives.
        always = torch.cat([items, follower_rows], dim=1)  # (B, A)
        candidates = torch.cat([targets.unsqueeze(1), always, negatives], dim=1)  # (B, C)
        n_always = always.shape[1]
        in_always = (candidates.unsqueeze(2) == always.unsqueeze(1)).any(dim=2) & (candidates != 0)  # (B, C)

        logits = self.model.score(items, types, candidates, followers)  # (B, C)
        # Log-Q correction (sampled softmax): a uniform draw represents
        # (n_items - 1) / S rows, while a row that is always a candidate represents itself.
        correction = math.log((n_items - 1) / n_sampled)
        logits = logits + torch.where(in_always, 0.0, correction)
        # Mask padding, a candidate equal to the target (it would push the
        # target down), a row listed twice and a negative that is always a candidate.
        repeated = torch.zeros_like(in_always)
        repeated[:, 1 : 1 + n_always] = ~_first_occurrence(always)
        sampled = torch.zeros_like(in_always)
        sampled[:, 1 + n_always :] = True
        blocked = (candidates == 0) | (candidates == candidates[:, :1]) | repeated | (in_always & sampled)
        blocked[:, 0] = False
        logits = logits.masked_fill(blocked, -math.inf)
        labels = torch.zeros(len(batch), dtype=torch.long, device=device)  # (B,) the target is candidate 0
        losses = F.cross_entropy(logits, labels, reduction="none")  # (B,)
        return (losses * weights).sum() / weights.sum()

    def _ensure_capacity(self, n_items: int) -> None:
        """Grow the model to ``n_items`` rows and pad the optimizer state to match.

        AdamW keeps its moments for every parameter. The moments of the new rows
        start at zero, the state those rows would have had if the embedding had
        been that large from the start (rows the trainer never sampled have no
        gradient). The step count is shared, so Adam's bias correction does not
        restart for new rows. Their first updates can therefore be a few times
        larger than ``learning_rate``.
        """
        self.model.grow(n_items)
        new = self.model.item_emb.weight
        old = self._item_param
        if new is old:
            return
        for group in self._optimizer.param_groups:
            group["params"] = [new if param is old else param for param in group["params"]]
        state = self._optimizer.state.pop(old, None)
        if state:
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == old.shape:
                    padded = torch.zeros_like(new, memory_format=torch.preserve_format)
                    padded[: old.shape[0]] = value
                    state[key] = padded
            self._optimizer.state[new] = state
        self._item_param = new

    def _draw_replay(self, n_new: int, replay_ratio: float) -> list[Example]:
        # Stochastic rounding keeps the mean replay_ratio for batches of one or two examples.
        expected = replay_ratio * n_new
        n_replay = int(expected) + (self._rng.random() < expected - int(expected))
        n_replay = min(n_replay, len(self._reservoir))
        return self._rng.sample(self._reservoir, n_replay)

    def _add_to_reservoir(self, example: Example) -> None:
        # Reservoir sampling (algorithm R): every example seen so far is held with
        # equal probability replay_capacity / n_seen.
        self._n_seen += 1
        if len(self._reservoir) < self.config.replay_capacity:
            self._reservoir.append(example)
            return
        slot = self._rng.randrange(self._n_seen)
        if slot < self.config.replay_capacity:
            self._reservoir[slot] = example

    @staticmethod
    def _check_examples(examples: Sequence[Example], n_items: int) -> None:
        if n_items <= 1:
            raise ValueError(
                f"n_items is {n_items}; expected at least 2 (padding row 0 plus one item). "
                "Add items to the vocabulary before training."
            )
        if not examples:
            raise ValueError("examples is empty; pass at least one Example to learn from")
        for i, example in enumerate(examples):
            highest = max(example.target, *example.item_seq)
            if highest >= n_items:
                raise ValueError(
                    f"example {i} uses item row {highest}, but n_items is {n_items}; "
                    "pass the vocabulary size taken after the example's items were added"
                )
        if sum(example.weight for example in examples) <= 0:
            raise ValueError("every example has weight 0; expected at least one positive weight")


def _first_occurrence(candidates: Tensor) -> Tensor:
    """Return a (B, C) mask that is True where a row's value has not appeared earlier in that row."""
    C = candidates.shape[1]
    earlier = torch.ones(C, C, dtype=torch.bool, device=candidates.device).tril(diagonal=-1)  # (C, C)
    same = candidates.unsqueeze(2) == candidates.unsqueeze(1)  # (B, C, C)
    return ~(same & earlier).any(dim=2)


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"invalid TrainerConfig.{name} {value!r}: expected an integer")
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise ValueError(f"invalid TrainerConfig.{name} {value}: expected at least {minimum}{upper}")


def _check_number(name: str, value: Any, minimum: float, inclusive: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"invalid TrainerConfig.{name} {value!r}: expected a finite number")
    if value < minimum or (value == minimum and not inclusive):
        bound = f">= {minimum}" if inclusive else f"> {minimum}"
        raise ValueError(f"invalid TrainerConfig.{name} {value}: expected a number {bound}")

"""The sequential ranker: a SASRec-style next-item model over a user's sequence.

A sequence is a user's item rows, oldest first, with the event type of each
interaction beside it. Row 0 of the item embedding is padding, and so is event
type 0. Sequences are LEFT padded, so the most recent item always sits at
position L-1 and its hidden state scores the next item.

The input at each position is the item embedding scaled by sqrt(D), plus the
event-type embedding, plus (transformer only) a learned position embedding.
The encoder is a causal pre-norm transformer or an LSTM, followed by a final
LayerNorm. Logits are tied to the item embeddings, times one learned scalar:
``logits = scale * hidden @ E.T``.

Repeat consumption dominates e-commerce logs: most events revisit an item the
user touched minutes before. So, with ``repeat_bonus`` on,
:meth:`SequentialRanker.score` adds a learned bonus to every item already in
the input sequence. The bonus is a sum of scalars looked up by how recently
the item occurred, the event type of its last occurrence and how often it
occurred. A term linear in the hidden state is added too, and it learns when
this user is about to repeat. With ``transition_bonus`` on,
it also adds learned weights times count features of the items that followed
the user's last few items in anyone's sequence (see :mod:`models.transitions`).
Both bonuses start at zero, so an untrained model scores like one without them.

Shape letters: B batch, L sequence length, D width, C candidates per row,
N item embedding rows (the item capacity, padding row included).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from models.transitions import FEATURES as TRANSITION_FEATURES
from models.transitions import LAGS as TRANSITION_LAGS

__all__ = [
    "ENCODERS",
    "EVENT_TYPE_IDS",
    "RankerConfig",
    "SequentialRanker",
    "pad_sequences",
    "top_k",
]

EVENT_TYPE_IDS = {"view": 1, "click": 2, "add_to_cart": 3, "purchase": 4, "rating": 5}  # 0 = padding
ENCODERS = ("transformer", "lstm")
# Width of the transformer's feed-forward layer, as a multiple of D.
FEEDFORWARD_MULTIPLIER = 4
# Occurrence counts above this share the last repeat-count bucket.
REPEAT_COUNT_BUCKETS = 5
# Seeds are kept below 2**31 so that (seed << 32) + row still fits a signed 64-bit seed.
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class RankerConfig:
    """Architecture and seed of a :class:`SequentialRanker`.

    ``initial_item_capacity`` is the number of item embedding rows allocated
    at construction, padding row included. :meth:`SequentialRanker.grow`
    doubles it as the catalogue grows. ``seed`` fixes the initial weights and
    the rows added by growth.
    """

    encoder: str = "transformer"
    max_seq_len: int = 50
    dim: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.1
    initial_item_capacity: int = 1024
    repeat_bonus: bool = True
    transition_bonus: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"invalid RankerConfig.encoder {self.encoder!r}: expected one of {', '.join(ENCODERS)}")
        _check_int("max_seq_len", self.max_seq_len, minimum=1)
        _check_int("dim", self.dim, minimum=1)
        _check_int("n_layers", self.n_layers, minimum=1)
        _check_int("n_heads", self.n_heads, minimum=1)
        _check_int("initial_item_capacity", self.initial_item_capacity, minimum=2)
        _check_int("seed", self.seed, minimum=0, maximum=MAX_SEED)
        if self.encoder == "transformer" and self.dim % self.n_heads:
            raise ValueError(
                f"invalid RankerConfig: dim {self.dim} is not divisible by n_heads {self.n_heads}; "
                "choose dim as a multiple of n_heads"
            )
        for name in ("repeat_bonus", "transition_bonus"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"invalid RankerConfig.{name} {getattr(self, name)!r}: expected true or false")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"invalid RankerConfig.dropout {self.dropout!r}: expected a value in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RankerConfig:
        """Build a config from :meth:`to_dict` output; missing keys take their defaults.

        Raises ValueError for keys that are not fields, such as a config saved
        by another version of the ranker.
        """
        allowed = [field.name for field in fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise ValueError(f"unknown RankerConfig keys {unknown}: expected only {', '.join(allowed)}")
        return cls(**d)


class SequentialRanker(nn.Module):
    """Score the next item of a sequence against every item embedding row.

    The item embedding grows by doubling (:meth:`grow`), so a model trained on
    rows ``< n`` stays valid when new items arrive. Construction is seeded by
    ``config.seed`` without touching torch's global random state.
    """

    def __init__(self, config: RankerConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.item_emb = nn.Embedding(config.initial_item_capacity, dim, padding_idx=0)
            self.type_emb = nn.Embedding(len(EVENT_TYPE_IDS) + 1, dim, padding_idx=0)
            self.dropout = nn.Dropout(config.dropout)
            if config.encoder == "transformer":
                self.pos_emb = nn.Embedding(config.max_seq_len, dim)
                # One layer object per block: nn.TransformerEncoder deep-copies a
                # single layer, so all of its blocks would start with equal weights.
                self.blocks = nn.ModuleList(
                    nn.TransformerEncoderLayer(
                        dim,
                        config.n_heads,
                        dim_feedforward=FEEDFORWARD_MULTIPLIER * dim,
                        dropout=config.dropout,
                        activation="gelu",
                        batch_first=True,
                        norm_first=True,
                    )
                    for _ in range(config.n_layers)
                )
            else:
                self.lstm = nn.LSTM(
                    dim,
                    dim,
                    num_layers=config.n_layers,
                    batch_first=True,
                    dropout=config.dropout if config.n_layers > 1 else 0.0,
                )
            self.final_norm = nn.LayerNorm(dim)
            # Multiplies the tied logits. It trains with the bonuses, at their
            # faster rate, so a young model can turn down its noisy embedding
            # scores and let the count-based bonuses rank.
            self.logit_scale = nn.Parameter(torch.ones(()))
            if config.repeat_bonus:
                self.repeat_recency = nn.Embedding(config.max_seq_len, 1)
                self.repeat_type = nn.Embedding(len(EVENT_TYPE_IDS) + 1, 1)
                self.repeat_count = nn.Embedding(REPEAT_COUNT_BUCKETS + 1, 1)
                self.repeat_gate = nn.Linear(dim, 1)
                for parameter in (self.repeat_recency.weight, self.repeat_type.weight,
                                  self.repeat_count.weight, self.repeat_gate.weight, self.repeat_gate.bias):
                    nn.init.zeros_(parameter)
            if config.transition_bonus:
                self.transition_weight = nn.Parameter(torch.zeros(TRANSITION_LAGS, TRANSITION_FEATURES))
            # Item rows ~ N(0, 1/D), so the scaled input sqrt(D) * E has unit variance.
            nn.init.normal_(self.item_emb.weight, std=dim**-0.5)
            with torch.no_grad():
                self.item_emb.weight[0].zero_()

    @property
    def item_capacity(self) -> int:
        """Rows in the item embedding, padding row 0 included."""
        return self.item_emb.num_embeddings

    def grow(self, n_items: int) -> bool:
        """Double the item capacity until it has at least ``n_items`` rows; return whether it grew.

        Existing rows keep their values. New rows are drawn from a generator
        seeded by ``config.seed`` and the new capacity, so the same growth gives
        the same rows after a restart. Growth replaces the embedding Parameter:
        an optimizer that holds the old one must be updated (see
        :class:`models.trainer.OnlineTrainer`).
        """
        if n_items <= self.item_capacity:
            return False
        capacity = self.item_capacity
        while capacity < n_items:
            capacity *= 2
        self._resize_items(capacity)
        return True

    @classmethod
    def from_state_dict(cls, config: RankerConfig, state: dict[str, Tensor]) -> SequentialRanker:
        """Build a ranker with the item capacity of ``state`` and load its weights.

        This is how a checkpoint is restored: a fresh ranker has
        ``config.initial_item_capacity`` rows, while the saved one may have grown.
        """
        if "item_emb.weight" not in state:
            raise ValueError("state dict has no 'item_emb.weight'; expected a SequentialRanker state_dict()")
        model = cls(config)
        model._resize_items(state["item_emb.weight"].shape[0])
        missing, unexpected = model.load_state_dict(state, strict=False)
        # A checkpoint saved before the bonuses existed lacks only their
        # parameters; they keep their zero start, which scores as that model did.
        missing = [key for key in missing if not key.startswith(("repeat_", "transition_", "logit_scale"))]
        if missing or unexpected:
            raise ValueError(
                f"state dict does not match the config: missing {missing}, unexpected {unexpected}"
            )
        return model

    def encode(self, item_seqs: Tensor, type_seqs: Tensor) -> Tensor:
        """Return the hidden state at every position, zero at padding: (B, L) ids to (B, L, D).

        Raises ValueError when the shapes differ, L exceeds ``max_seq_len``, an
        id is out of range, padding is not on the left, or an item and its event
        type disagree about being padding.
        """
        self._check_inputs(item_seqs, type_seqs)
        padding = item_seqs == 0  # (B, L)

        x = self.item_emb(item_seqs) * math.sqrt(self.config.dim) + self.type_emb(type_seqs)  # (B, L, D)
        if self.config.encoder == "transformer":
            # Positions count from the oldest real item, so padding length does not shift them.
            positions = ((~padding).cumsum(dim=1) - 1).clamp(min=0)  # (B, L)
            x = x + self.pos_emb(positions)
        x = self.dropout(x)

        if self.config.encoder == "transformer":
            mask = _attention_mask(padding, self.config.n_heads, x.dtype)  # (B*H, L, L)
            for block in self.blocks:
                x = block(x, src_mask=mask)
        else:
            x = self._run_lstm(x, padding)
        x = self.final_norm(x)
        return x.masked_fill(padding.unsqueeze(-1), 0.0)  # (B, L, D)

    def last_hidden(self, item_seqs: Tensor, type_seqs: Tensor) -> Tensor:
        """Return the hidden state at the most recent position, (B, D); zero for an all-padding row."""
        return self.encode(item_seqs, type_seqs)[:, -1, :]

    def logits(self, hidden: Tensor, candidates: Tensor | None = None) -> Tensor:
        """Score ``hidden`` (B, D) against candidate rows (B, C), or against all N rows when None.

        Returns (B, C) or (B, N). The (B, N) form includes row 0, padding, which
        callers must mask.
        """
        hidden = hidden * self.logit_scale
        if candidates is None:
            return hidden @ self.item_emb.weight.T  # (B, N)
        if candidates.dim() != 2 or candidates.shape[0] != hidden.shape[0]:
            raise ValueError(
                f"candidates have shape {tuple(candidates.shape)}; expected (B, C) with B = {hidden.shape[0]}"
            )
        embedded = self.item_emb(candidates)  # (B, C, D)
        return torch.einsum("bcd,bd->bc", embedded, hidden)  # (B, C)

    def score(
        self,
        item_seqs: Tensor,
        type_seqs: Tensor,
        candidates: Tensor | None = None,
        followers: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Score the next item of each sequence: (B, L) ids to (B, C) or, without candidates, (B, N).

        The tied logits, plus with ``repeat_bonus`` the bonus of items already
        in the sequence, plus with ``transition_bonus`` and ``followers`` (rows,
        lags and features from :func:`models.transitions.batch_followers`) the
        bonus of items that followed the user's recent ones. As with
        :meth:`logits`, the (B, N) form includes row 0.
        """
        hidden = self.last_hidden(item_seqs, type_seqs)  # (B, D)
        logits = self.logits(hidden, candidates)
        if self.config.repeat_bonus:
            logits = logits + self.history_bonus(item_seqs, type_seqs, hidden, candidates)
        if self.config.transition_bonus and followers is not None:
            logits = logits + self.follower_bonus(*followers, candidates)
        return logits

    def follower_bonus(self, rows: Tensor, lags: Tensor, features: Tensor, candidates: Tensor | None = None) -> Tensor:
        """Return the transition bonus of each candidate, (B, C), or of every row, (B, N).

        ``rows`` and ``lags`` are (B, E), ``features`` (B, E, F); entries at
        row 0 are padding. An item listed at several lags gets the sum.
        """
        if not self.config.transition_bonus:
            raise ValueError("this ranker has no transition bonus: it was built with RankerConfig.transition_bonus false")
        rows, lags, features = (tensor.to(self.transition_weight.device) for tensor in (rows, lags, features))
        entry_bonus = (features * self.transition_weight[lags]).sum(dim=-1) * (rows != 0)  # (B, E)
        if candidates is None:
            dense = torch.zeros(rows.shape[0], self.item_capacity, dtype=entry_bonus.dtype, device=rows.device)
            return dense.scatter_add(1, rows, entry_bonus)  # (B, N)
        match = candidates.unsqueeze(2) == rows.unsqueeze(1)  # (B, C, E)
        return torch.einsum("bce,be->bc", match.to(entry_bonus.dtype), entry_bonus)  # (B, C)

    def history_bonus(
        self, item_seqs: Tensor, type_seqs: Tensor, hidden: Tensor, candidates: Tensor | None = None
    ) -> Tensor:
        """Return the repeat bonus of each candidate, (B, C), or of every row, (B, N); 0 outside the sequence.

        ``hidden`` is the last hidden state of the same sequences, (B, D).
        Recency counts positions back from the most recent one, so it does not
        depend on how much left padding there is. Raises ValueError when the
        model was built with ``repeat_bonus`` off.
        """
        if not self.config.repeat_bonus:
            raise ValueError("this ranker has no repeat bonus: it was built with RankerConfig.repeat_bonus false")
        B, L = item_seqs.shape
        real = item_seqs != 0  # (B, L)
        steps = torch.arange(L, device=item_seqs.device)
        same = (item_seqs.unsqueeze(2) == item_seqs.unsqueeze(1)) & real.unsqueeze(1)  # (B, L, L)
        count = same.sum(dim=2)  # (B, L) occurrences of the item at each position
        repeated_later = same & (steps.view(1, 1, L) > steps.view(1, L, 1))  # (B, L, L)
        last = real & ~repeated_later.any(dim=2)  # (B, L) the most recent occurrence of each item
        distance = (L - 1 - steps).clamp(max=self.config.max_seq_len - 1)  # (L,)
        bonus = (
            self.repeat_recency(distance).view(1, L)
            + self.repeat_type(type_seqs).squeeze(-1)
            + self.repeat_count(count.clamp(max=REPEAT_COUNT_BUCKETS)).squeeze(-1)
            + self.repeat_gate(hidden)  # (B, 1)
        )  # (B, L)
        bonus = bonus * last
        if candidates is None:
            dense = torch.zeros(B, self.item_capacity, dtype=bonus.dtype, device=bonus.device)  # (B, N)
            return dense.scatter_add(1, item_seqs, bonus)
        match = (candidates.unsqueeze(2) == item_seqs.unsqueeze(1)) & last.unsqueeze(1)  # (B, C, L)
        return torch.einsum("bcl,bl->bc", match.to(bonus.dtype), bonus)  # (B, C)

    def _resize_items(self, capacity: int) -> None:
        old = self.item_emb.weight
        n_kept = min(capacity, old.shape[0])
        weight = torch.empty(capacity, self.config.dim, dtype=old.dtype)
        if capacity > n_kept:
            generator = torch.Generator().manual_seed((self.config.seed << 32) + capacity)
            weight[n_kept:].normal_(std=self.config.dim**-0.5, generator=generator)
        weight = weight.to(old.device)
        with torch.no_grad():
            weight[:n_kept] = old[:n_kept]
        embedding = nn.Embedding(capacity, self.config.dim, padding_idx=0, _weight=weight)
        embedding.weight.requires_grad_(old.requires_grad)
        self.item_emb = embedding

    def _run_lstm(self, x: Tensor, padding: Tensor) -> Tensor:
        # Rotate each row so its real items come first, run the LSTM, rotate back.
        # With padding at the end, the LSTM reaches every real item before any padding.
        B, L, D = x.shape
        n_pad = padding.sum(dim=1, keepdim=True)  # (B, 1)
        steps = torch.arange(L, device=x.device).unsqueeze(0)  # (1, L)
        to_front = ((steps + n_pad) % L).unsqueeze(-1).expand(B, L, D)  # (B, L, D)
        out, _ = self.lstm(x.gather(1, to_front))  # (B, L, D)
        to_back = ((steps - n_pad) % L).unsqueeze(-1).expand(B, L, D)  # (B, L, D)
        return out.gather(1, to_back)

    def _check_inputs(self, item_seqs: Tensor, type_seqs: Tensor) -> None:
        if item_seqs.dim() != 2 or item_seqs.shape != type_seqs.shape:
            raise ValueError(
                f"item_seqs {tuple(item_seqs.shape)} and type_seqs {tuple(type_seqs.shape)} "
                "must both have shape (B, L)"
            )
        length = item_seqs.shape[1]
        if length > self.config.max_seq_len:
            raise ValueError(
                f"sequence length {length} exceeds max_seq_len {self.config.max_seq_len}; "
                "keep the most recent items with pad_sequences"
            )
        if item_seqs.numel() == 0:
            return
        bad_items = item_seqs[(item_seqs < 0) | (item_seqs >= self.item_capacity)]
        if bad_items.numel():
            raise ValueError(
                f"item row {int(bad_items[0])} is outside 0..{self.item_capacity - 1}; "
                "call grow(n_items) before encoding new items"
            )
        bad_types = type_seqs[(type_seqs < 0) | (type_seqs > len(EVENT_TYPE_IDS))]
        if bad_types.numel():
            raise ValueError(f"event type id {int(bad_types[0])} is outside 0..{len(EVENT_TYPE_IDS)}")
        padding = item_seqs == 0  # (B, L)
        if not torch.equal(padding, type_seqs == 0):
            raise ValueError("item_seqs and type_seqs disagree on padding: id 0 must appear at the same positions")
        if bool((padding[:, 1:] & ~padding[:, :-1]).any()):
            raise ValueError("padding (id 0) must be on the left, before every real item; use pad_sequences")


def pad_sequences(seqs: list[list[int]], types: list[list[int]], max_len: int) -> tuple[Tensor, Tensor]:
    """Left-pad item rows and event types into two (B, max_len) tensors, keeping the last max_len.

    Raises ValueError for mismatched lengths, item rows below 1, and event
    types outside 1..5.

    >>> items, types = pad_sequences([[7, 8, 9], [5]], [[1, 1, 2], [4]], max_len=2)
    >>> items.tolist(), types.tolist()
    ([[8, 9], [0, 5]], [[1, 2], [0, 4]])
    """
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    if len(seqs) != len(types):
        raise ValueError(f"got {len(seqs)} item sequences but {len(types)} type sequences")
    item_rows = torch.zeros((len(seqs), max_len), dtype=torch.long)  # (B, L)
    type_ids = torch.zeros((len(seqs), max_len), dtype=torch.long)  # (B, L)
    for b, (seq, type_seq) in enumerate(zip(seqs, types)):
        if len(seq) != len(type_seq):
            raise ValueError(f"sequence {b} has {len(seq)} items but {len(type_seq)} event types")
        recent, recent_types = list(seq[-max_len:]), list(type_seq[-max_len:])
        if not recent:
            continue
        if min(recent) < 1:
            raise ValueError(f"sequence {b} contains item row {min(recent)}; rows start at 1 because 0 is padding")
        if min(recent_types) < 1 or max(recent_types) > len(EVENT_TYPE_IDS):
            raise ValueError(f"sequence {b} contains an event type outside 1..{len(EVENT_TYPE_IDS)}: {recent_types}")
        item_rows[b, max_len - len(recent) :] = torch.tensor(recent)
        type_ids[b, max_len - len(recent) :] = torch.tensor(recent_types)
    return item_rows, type_ids


@torch.no_grad()
def top_k(
    model: SequentialRanker,
    item_seq: list[int],
    type_seq: list[int],
    k: int,
    n_items: int,
    exclude: Iterable[int] = (),
) -> list[tuple[int, float]]:
    """Return the k best (row, score) pairs for one sequence, best first.

    Only rows 1 .. n_items-1 are scored, and only those the model has an
    embedding for, so padding and items not yet known are never returned.
    Rows in ``exclude`` are dropped. The list is shorter than k when fewer rows
    remain, and ties come in no guaranteed order. An empty sequence scores
    every row 0.0.

    NOTE: items in ``item_seq`` at or above ``model.item_capacity`` are left out
    of the input, because a snapshot taken before growth has no embedding for them.

    The model runs in eval mode; its previous mode is restored on return.
    """
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    if len(item_seq) != len(type_seq):
        raise ValueError(f"item_seq has {len(item_seq)} items but type_seq has {len(type_seq)} event types")
    n_rows = min(n_items, model.item_capacity)
    if k == 0 or n_rows <= 1:
        return []
    known = [(row, type_id) for row, type_id in zip(item_seq, type_seq) if row < model.item_capacity]
    items, types = pad_sequences(
        [[row for row, _ in known]], [[type_id for _, type_id in known]], model.config.max_seq_len
    )  # (1, L)
    device = model.item_emb.weight.device

    was_training = model.training
    model.eval()
    try:
        scores = model.score(items.to(device), types.to(device))[0, :n_rows].float().cpu()  # (N,)
    finally:
        model.train(was_training)

    blocked = {0} | {row for row in exclude if 0 < row < n_rows}
    scores[list(blocked)] = -math.inf
    n_best = min(k, n_rows - len(blocked))
    if n_best <= 0:
        return []
    best = torch.topk(scores, n_best)
    return list(zip(best.indices.tolist(), best.values.tolist()))


def _attention_mask(padding: Tensor, n_heads: int, dtype: torch.dtype) -> Tensor:
    """Build the additive mask (B*H, L, L): query i attends to keys j <= i that are not padding.

    Every query also attends to itself, so an all-padding row has a finite
    softmax instead of NaN. Its output is zeroed by ``encode``.
    """
    B, L = padding.shape
    future = torch.ones(L, L, dtype=torch.bool, device=padding.device).triu(diagonal=1)  # (L, L)
    blocked = future.unsqueeze(0) | padding.unsqueeze(1)  # (B, L, L)
    blocked &= ~torch.eye(L, dtype=torch.bool, device=padding.device)
    mask = torch.zeros(B, L, L, dtype=dtype, device=padding.device).masked_fill(blocked, -math.inf)
    # nn.MultiheadAttention reads a 3-D mask as index b * H + h.
    return mask.repeat_interleave(n_heads, dim=0)  # (B*H, L, L)


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"invalid RankerConfig.{name} {value!r}: expected an integer")
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise ValueError(f"invalid RankerConfig.{name} {value}: expected at least {minimum}{upper}")

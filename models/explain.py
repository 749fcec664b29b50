"""Reasons shown beside recommended items, taken from the user's own sequence.

Method: leave-one-out occlusion. The contribution of a sequence item ``x`` to
a recommended item ``r`` is ``score(sequence, r) - score(sequence without x,
r)``, where the score is the ranker's logit and "without x" drops every
occurrence of ``x`` and left-pads the rest again. A positive contribution
means that ``x`` raised the score of ``r``. A reason cites the items with the
largest positive contributions.

Occlusion is used instead of attention weights because it measures the
model's own output. It works the same for the transformer and the LSTM
encoder, and it accounts for every layer, the event types and the position
shift that removing an item causes. One attention layer's weights show where
that layer reads, not how much the score depends on it.

The cost is a forward pass over ``U + 1`` rows per user, scoring only the K
recommended items in each row. U is the number of distinct sequence items
that are occluded: the ``max_occluded_items`` most recent ones, so older
items stay in the input but are never cited. A forward pass costs about
linearly in its rows, so a reason costs about U + 1 times the scoring of one
user. :func:`explain_batch` encodes the rows of many users together, sorted
by length so that each pass pads only to its longest row.

When no sequence item raised an item's score, or the model has no embedding
for the item, a fallback reason is used: "often bought after x" from
:class:`CoVisitation` counts, then "popular now" for items in the popular
list. An item with none of these gets no reason (None), rather than one that
is not true.

Shape letters: U distinct sequence items, L sequence length, D width,
K recommended items, R rows of all users together, P rows of one pass,
W the width of one pass.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from models.ranker import EVENT_TYPE_IDS, SequentialRanker, pad_sequences
from models.transitions import Transitions, batch_followers
from state.vocabulary import ItemVocabulary

__all__ = [
    "REASON_KINDS",
    "CoVisitation",
    "Reason",
    "bought_after_reason",
    "explain",
    "explain_batch",
    "popular_reasons",
    "sequence_contributions",
]

REASON_KINDS = ("sequence", "popular_now", "bought_after")
# A reason cites a second sequence item only when its contribution is at least
# this share of the first item's, so the text names no item that barely counted.
MIN_RELATIVE_CONTRIBUTION = 0.5
# "Often bought after x" needs at least this many counted (x, item) pairs.
MIN_BOUGHT_AFTER_COUNT = 2
# Occlusion rows encoded per forward pass. Rows are sorted by length, so each
# pass pads only to its longest row. In benchmarks/worker_throughput.py on one
# CPU thread, passes of 32 and 64 rows were equally fast, 16 and 128 slower.
ROWS_PER_PASS = 64
# Phrase for each event type, with {} for the item list.
_PHRASES = {
    "view": "viewed {}",
    "click": "clicked {}",
    "add_to_cart": "added {} to your cart",
    "purchase": "bought {}",
    "rating": "rated {}",
}


@dataclass(frozen=True)
class Reason:
    """A reason for one recommended item, as a short text a consumer can display.

    ``kind`` is one of :data:`REASON_KINDS`. ``items`` are the ids of the
    user's sequence items that the text names, most important first, and
    empty for "popular_now".
    """

    kind: str
    text: str
    items: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in REASON_KINDS:
            raise ValueError(f"invalid Reason.kind {self.kind!r}: expected one of {', '.join(REASON_KINDS)}")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "items": list(self.items)}


POPULAR_NOW = Reason("popular_now", "popular now")


class CoVisitation:
    """Counts of ordered item pairs (earlier item, later item) for "often bought after" reasons.

    The caller chooses which pairs to count. The reason text reads "often
    bought after", so feed pairs whose later item was purchased, with the
    user's previous other item as the earlier one. Pairs of an item with itself are ignored.

    Each earlier item keeps at most ``max_followers`` later items. When the
    count exceeds twice that, the rarest are dropped, so counts of rare pairs
    are approximate.

    NOTE: memory grows with the number of distinct earlier items, up to the
    catalogue size.

    >>> covisitation = CoVisitation()
    >>> for prev_item, item in [("a", "b"), ("a", "b"), ("a", "c"), ("b", "c")]:
    ...     covisitation.update(prev_item, item)
    >>> covisitation.top_after("a", 5)
    [('b', 2), ('c', 1)]
    """

    def __init__(self, max_followers: int = 100) -> None:
        if isinstance(max_followers, bool) or not isinstance(max_followers, int) or max_followers < 1:
            raise ValueError(f"invalid max_followers {max_followers!r}: expected an integer of at least 1")
        self.max_followers = max_followers
        self._followers: dict[str, Counter[str]] = {}

    def __len__(self) -> int:
        """Number of distinct earlier items."""
        return len(self._followers)

    def update(self, prev_item: str, item: str) -> None:
        """Count one occurrence of ``item`` after ``prev_item``."""
        if prev_item == item:
            return
        followers = self._followers.setdefault(prev_item, Counter())
        followers[item] += 1
        if len(followers) > 2 * self.max_followers:
            kept = _most_common(followers, self.max_followers)
            self._followers[prev_item] = Counter(dict(kept))

    def count(self, prev_item: str, item: str) -> int:
        """Return how often ``item`` was counted after ``prev_item``."""
        followers = self._followers.get(prev_item)
        return 0 if followers is None else followers[item]

    def top_after(self, item: str, n: int) -> list[tuple[str, int]]:
        """Return up to ``n`` (later item, count) pairs after ``item``, most frequent first, ties by id."""
        followers = self._followers.get(item)
        if followers is None or n <= 0:
            return []
        return _most_common(followers, n)


def explain(
    model: SequentialRanker,
    vocabulary: ItemVocabulary,
    sequence_items: Sequence[str],
    sequence_types: Sequence[str],
    recommended_items: Sequence[str],
    max_reasons: int = 2,
    covisitation: CoVisitation | None = None,
    popular_items: Collection[str] = (),
    max_occluded_items: int = 10,
    transitions: Transitions | None = None,
    followers_per_item: int = 30,
) -> list[Reason | None]:
    """Return one reason per recommended item, in the order of ``recommended_items``.

    ``sequence_items`` and ``sequence_types`` are the user's interactions,
    oldest first, as stored in their sequence. ``max_reasons`` is the most
    sequence items one reason cites, chosen from the ``max_occluded_items``
    most recent distinct ones. ``model`` is the snapshot that ranked the
    items, and the vocabulary is not changed.

    Steps, in this order for each item:

    1. "sequence": the items of the user's sequence that raised the item's
       score, by leave-one-out occlusion, as "because you viewed x and y";
       otherwise, for an item of the user's own sequence, the item itself,
       as "because you viewed x";
    2. "bought_after": otherwise the most recent sequence item ``x`` that
       ``covisitation`` counted before the item at least
       ``MIN_BOUGHT_AFTER_COUNT`` times, as "often bought after x";
    3. "popular_now": otherwise "popular now" when the item is in ``popular_items``;
    4. otherwise None.

    Sequence items the model has no embedding for (not in the vocabulary, or
    newer than the snapshot) are left out of the model's input, the same rule
    :meth:`models.recommender.Recommender.rank` applies, so no reason cites
    them. ``transitions`` and ``followers_per_item``, when the model has a
    transition bonus, are the counts and setting it was scored with, so that
    removing an item also removes the bonus of the items that followed it.
    The model runs in eval mode; its previous mode is restored.
    Raises ValueError for mismatched sequence lengths, an unknown event type,
    or ``max_reasons`` or ``max_occluded_items`` below 1.

    To explain several users, call :func:`explain_batch` once instead,
    because it encodes the rows of all of them together.
    """
    return explain_batch(
        model,
        vocabulary,
        [(sequence_items, sequence_types)],
        [recommended_items],
        max_reasons=max_reasons,
        covisitation=covisitation,
        popular_items=popular_items,
        max_occluded_items=max_occluded_items,
        transitions=transitions,
        followers_per_item=followers_per_item,
    )[0]


def explain_batch(
    model: SequentialRanker,
    vocabulary: ItemVocabulary,
    sequences: Sequence[tuple[Sequence[str], Sequence[str]]],
    recommended: Sequence[Sequence[str]],
    *,
    max_reasons: int = 2,
    covisitation: CoVisitation | None = None,
    popular_items: Collection[str] = (),
    max_occluded_items: int = 10,
    transitions: Transitions | None = None,
    followers_per_item: int = 30,
) -> list[list[Reason | None]]:
    """Return the reasons of :func:`explain` for B users, encoding all of their rows together.

    ``sequences[b]`` is user b's (items, event types), oldest first, and
    ``recommended[b]`` their recommended items. ``result[b][k]`` is the reason
    for ``recommended[b][k]``, and the other parameters mean what they mean
    in :func:`explain`. The model encodes each row independently of the
    others, so a user gets the reasons that :func:`explain` gives for them
    alone. Only float rounding in the batched products can differ (the tests
    allow 1e-5 on a contribution), so a reason can change only between two
    contributions that are that close.

    Raises ValueError as :func:`explain` does, and when ``sequences`` and
    ``recommended`` differ in length. A sequence whose items and event types
    differ in length is named by its index b.
    """
    _check_positive_int("max_reasons", max_reasons)
    if len(sequences) != len(recommended):
        raise ValueError(
            f"got {len(sequences)} sequences but {len(recommended)} recommended lists; "
            "expected one list of recommended items per sequence"
        )
    contributions = _batch_contributions(
        model, vocabulary, sequences, recommended, max_occluded_items, transitions, followers_per_item
    )
    popular = set(popular_items)
    out = []
    for (items, types), recommended_items, user_contributions in zip(sequences, recommended, contributions):
        repeatable: set[str] = set()
        if model.config.repeat_bonus:
            recent = items[-model.config.max_seq_len :]
            repeatable = {item for item in recent if _model_row(vocabulary, model.item_capacity, item) is not None}
        out.append(_user_reasons(items, types, recommended_items, user_contributions, max_reasons, covisitation,
                                 popular, repeatable))
    return out


def sequence_contributions(
    model: SequentialRanker,
    vocabulary: ItemVocabulary,
    sequence_items: Sequence[str],
    sequence_types: Sequence[str],
    recommended_items: Sequence[str],
    max_occluded_items: int = 10,
) -> dict[str, list[tuple[str, float]]]:
    """Return, per recommended item, sequence items' leave-one-out contributions, largest first.

    A contribution is the drop of the recommended item's logit when every
    occurrence of the sequence item is removed. The model reads the last
    ``max_seq_len`` interactions, and the ``max_occluded_items`` most recent
    distinct items among them get a contribution. Only items the model has an
    embedding for count: a recommended item without one is missing from the
    result, and the result is empty when no sequence item has one. Ties keep
    the most recent item first.
    """
    return _batch_contributions(
        model, vocabulary, [(sequence_items, sequence_types)], [recommended_items], max_occluded_items
    )[0]


def bought_after_reason(covisitation: CoVisitation, sequence_items: Sequence[str], item: str) -> Reason | None:
    """Return "often bought after x" for the most recent sequence item x counted before ``item``, or None.

    ``x`` qualifies when ``covisitation`` counted the pair (x, item) at least
    ``MIN_BOUGHT_AFTER_COUNT`` times.

    >>> covisitation = CoVisitation()
    >>> covisitation.update("tent", "stove"); covisitation.update("tent", "stove")
    >>> bought_after_reason(covisitation, ["tent", "boots"], "stove")
    Reason(kind='bought_after', text='often bought after tent', items=('tent',))
    """
    # Distinct items, most recent first.
    for earlier in dict.fromkeys(reversed(sequence_items)):
        if covisitation.count(earlier, item) >= MIN_BOUGHT_AFTER_COUNT:
            return Reason("bought_after", f"often bought after {earlier}", (earlier,))
    return None


def popular_reasons(items: Sequence[str]) -> list[Reason]:
    """Return "popular now" for each item, for a list taken from item popularity."""
    return [POPULAR_NOW for _ in items]


@dataclass(frozen=True)
class _OcclusionPlan:
    """One user's rows to encode: U + 1 rows, row 0 the whole sequence, row u + 1 without ``distinct[u]``."""

    distinct: list[str]  # the U occluded items, most recent first
    item_rows: list[list[int]]  # U + 1 lists of embedding rows, oldest first
    type_ids: list[list[int]]  # U + 1 lists of event type ids, aligned with item_rows
    targets: dict[str, int]  # recommended item -> embedding row, in recommended order


def _user_reasons(
    sequence_items: Sequence[str],
    sequence_types: Sequence[str],
    recommended_items: Sequence[str],
    contributions: dict[str, list[tuple[str, float]]],
    max_reasons: int,
    covisitation: CoVisitation | None,
    popular: set[str],
    repeatable: Collection[str] = (),
) -> list[Reason | None]:
    """Return one reason per recommended item; ``repeatable`` are sequence items the repeat bonus can raise."""
    last_type = dict(zip(sequence_items, sequence_types))  # the most recent event type per item
    reasons: list[Reason | None] = []
    for item in recommended_items:
        reason = _sequence_reason(contributions.get(item, []), last_type, max_reasons)
        if reason is None and item in repeatable:
            # An item the user came back to from further back than the occluded
            # items: the ranker's repeat bonus raised it, so the item itself is the reason.
            reason = Reason("sequence", _describe([(item, last_type[item])]), (item,))
        if reason is None and covisitation is not None:
            reason = bought_after_reason(covisitation, sequence_items, item)
        if reason is None and item in popular:
            reason = POPULAR_NOW
        reasons.append(reason)
    return reasons


def _batch_contributions(
    model: SequentialRanker,
    vocabulary: ItemVocabulary,
    sequences: Sequence[tuple[Sequence[str], Sequence[str]]],
    recommended: Sequence[Sequence[str]],
    max_occluded_items: int,
    transitions: Transitions | None = None,
    followers_per_item: int = 30,
) -> list[dict[str, list[tuple[str, float]]]]:
    """Return :func:`sequence_contributions` for each user, encoding every user's rows together."""
    _check_positive_int("max_occluded_items", max_occluded_items)
    capacity, max_len = model.item_capacity, model.config.max_seq_len
    plans = [
        _plan_occlusion(vocabulary, capacity, max_len, b, items, types, recommended_items, max_occluded_items)
        for b, ((items, types), recommended_items) in enumerate(zip(sequences, recommended))
    ]
    drops = iter(_logit_drops(model, [plan for plan in plans if plan is not None], transitions, followers_per_item))

    out: list[dict[str, list[tuple[str, float]]]] = []
    for plan in plans:
        if plan is None:
            out.append({})
            continue
        user_drops = next(drops)  # (U, K)
        out.append({
            item: sorted(zip(plan.distinct, [row[k] for row in user_drops]), key=lambda pair: -pair[1])
            for k, item in enumerate(plan.targets)
        })
    return out


def _plan_occlusion(
    vocabulary: ItemVocabulary,
    capacity: int,
    max_len: int,
    b: int,
    sequence_items: Sequence[str],
    sequence_types: Sequence[str],
    recommended_items: Sequence[str],
    max_occluded_items: int,
) -> _OcclusionPlan | None:
    """Return user ``b``'s rows, or None when no sequence item or no recommended item has an embedding."""
    if len(sequence_items) != len(sequence_types):
        raise ValueError(
            f"sequence {b} has {len(sequence_items)} items but {len(sequence_types)} event types; "
            "expected one event type per item"
        )
    known = [
        (item, row, _type_id(event_type))
        for item, event_type in zip(sequence_items[-max_len:], sequence_types[-max_len:])
        if (row := _model_row(vocabulary, capacity, item)) is not None
    ]
    targets = {
        item: row for item in recommended_items if (row := _model_row(vocabulary, capacity, item)) is not None
    }
    if not known or not targets:
        return None

    distinct = list(dict.fromkeys(item for item, _, _ in reversed(known)))[:max_occluded_items]
    variants = [known] + [[entry for entry in known if entry[0] != removed] for removed in distinct]
    return _OcclusionPlan(
        distinct=distinct,
        item_rows=[[row for _, row, _ in variant] for variant in variants],
        type_ids=[[type_id for _, _, type_id in variant] for variant in variants],
        targets=targets,
    )


@torch.no_grad()
def _logit_drops(
    model: SequentialRanker,
    plans: list[_OcclusionPlan],
    transitions: Transitions | None = None,
    followers_per_item: int = 30,
) -> list[list[list[float]]]:
    """Return, per plan, the (U, K) drops of its targets' logits when each occluded item is removed.

    The R = sum of (U + 1) rows of all plans are encoded together. Each row
    is scored only on its own user's K targets, padded with row 0 to the
    largest K in the batch, so the catalogue is never scored.
    """
    if not plans:
        return []
    # firsts[p] is the index of plan p's whole-sequence row, first_of_row[r] that of row r's plan.
    firsts: list[int] = []
    first_of_row: list[int] = []
    candidates: list[list[int]] = []
    for plan in plans:
        n_rows = len(plan.item_rows)
        firsts.append(len(first_of_row))
        first_of_row.extend([firsts[-1]] * n_rows)
        candidates.extend([list(plan.targets.values())] * n_rows)
    width = max(len(plan.targets) for plan in plans)
    device = model.item_emb.weight.device
    candidate_rows = torch.tensor([rows + [0] * (width - len(rows)) for rows in candidates], device=device)  # (R, K)

    was_training = model.training
    model.eval()
    try:
        item_rows = [rows for plan in plans for rows in plan.item_rows]
        type_ids = [ids for plan in plans for ids in plan.type_ids]
        hidden = _encode_by_length(model, item_rows, type_ids)  # (R, D)
        scores = model.logits(hidden, candidate_rows)  # (R, K)
        if model.config.repeat_bonus:
            items, types = pad_sequences(item_rows, type_ids, max(1, max(map(len, item_rows))))  # (R, W)
            scores = scores + model.history_bonus(items.to(device), types.to(device), hidden, candidate_rows)
        if model.config.transition_bonus and transitions is not None:
            followers = [transitions.followers(rows, followers_per_item) for rows in item_rows]
            scores = scores + model.follower_bonus(*batch_followers(followers, model.item_capacity), candidate_rows)
        scores = scores.float().cpu()
    finally:
        model.train(was_training)

    drops = (scores[first_of_row] - scores).tolist()  # (R, K), zero on whole-sequence rows
    return [
        [row[: len(plan.targets)] for row in drops[first + 1 : first + len(plan.item_rows)]]
        for plan, first in zip(plans, firsts)
    ]


def _encode_by_length(model: SequentialRanker, item_rows: list[list[int]], type_ids: list[list[int]]) -> torch.Tensor:
    """Return the last hidden state of each row, (R, D), encoding rows of similar length together.

    Rows are sorted by length and encoded ``ROWS_PER_PASS`` at a time, each
    pass padded only to its longest row. A row's hidden state does not depend
    on its padding: positions count from the oldest real item and attention
    skips padding. So this equals one pass padded to ``max_seq_len`` up to
    float rounding, and it encodes about the real positions instead of
    R * ``max_seq_len`` of them.
    """
    device = model.item_emb.weight.device
    order = sorted(range(len(item_rows)), key=lambda r: len(item_rows[r]))
    parts = []
    for start in range(0, len(order), ROWS_PER_PASS):
        chunk = order[start : start + ROWS_PER_PASS]
        # Left-pad with 0 here, not with pad_sequences, to build one tensor per
        # pass instead of two per row. An occluded row can be empty, so W >= 1.
        width = max(1, len(item_rows[chunk[-1]]))
        items = torch.tensor([[0] * (width - len(item_rows[r])) + item_rows[r] for r in chunk])  # (P, W)
        types = torch.tensor([[0] * (width - len(type_ids[r])) + type_ids[r] for r in chunk])  # (P, W)
        parts.append(model.last_hidden(items.to(device), types.to(device)))  # (P, D)
    sorted_hidden = torch.cat(parts)  # (R, D), rows in length order
    hidden = torch.empty_like(sorted_hidden)
    hidden[torch.tensor(order, device=device)] = sorted_hidden
    return hidden


def _sequence_reason(
    contributions: list[tuple[str, float]], last_type: dict[str, str], max_reasons: int
) -> Reason | None:
    positive = [(item, value) for item, value in contributions if value > 0.0]
    if not positive:
        return None
    best = positive[0][1]
    cited = [positive[0][0]]
    for item, value in positive[1:max_reasons]:
        if value >= MIN_RELATIVE_CONTRIBUTION * best:
            cited.append(item)
    return Reason("sequence", _describe([(item, last_type[item]) for item in cited]), tuple(cited))


def _describe(cited: list[tuple[str, str]]) -> str:
    """Phrase (item, event type) pairs as "because you ...", grouping items by event type.

    >>> _describe([("i12", "view"), ("i678", "view")])
    'because you viewed i12 and i678'
    >>> _describe([("i12", "add_to_cart"), ("i678", "view")])
    'because you added i12 to your cart and viewed i678'
    """
    by_type: dict[str, list[str]] = {}
    for item, event_type in cited:
        by_type.setdefault(event_type, []).append(item)
    phrases = [_PHRASES[event_type].format(_join(items)) for event_type, items in by_type.items()]
    return "because you " + " and ".join(phrases)


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _model_row(vocabulary: ItemVocabulary, capacity: int, item: str) -> int | None:
    """Return the item's embedding row when a model of ``capacity`` rows has one, else None."""
    row = vocabulary.row(item)
    return row if row is not None and row < capacity else None


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"invalid {name} {value!r}: expected an integer of at least 1")


def _type_id(event_type: str) -> int:
    type_id = EVENT_TYPE_IDS.get(event_type)
    if type_id is None:
        raise ValueError(f"invalid event type {event_type!r}: expected one of {', '.join(EVENT_TYPE_IDS)}")
    return type_id


def _most_common(counts: Counter[str], n: int) -> list[tuple[str, int]]:
    return heapq.nsmallest(n, counts.items(), key=lambda kv: (-kv[1], kv[0]))

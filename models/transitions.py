"""Online counts of which item follows which, as inputs to the ranker's transition bonus.

Session logs such as YOOCHOOSE and DIGINETICA are dominated by short-range
item-to-item patterns that nearest-neighbour methods read straight from
counts, while an embedding model has to learn them slowly. So the ranker
takes the counts as an input. :class:`Transitions` counts, for every item row,
the rows that came after it within a few events in any user's sequence. The
recommender weighs a row d events later by 1 / d. :meth:`Transitions.followers`
lists, for a user's last few distinct items, the followers with two features
each. The ranker weighs those features with
learned scalars (``RankerConfig.transition_bonus``), so how much to trust the
counts is learned online like every other weight.

Counts live in memory beside the vocabulary and popularity, and go into each
checkpoint (:meth:`Transitions.to_tensors`), so a restarted worker scores with
the counts of its last checkpoint.

Shape letters: B batch, E follower entries per sequence, F features.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["FEATURES", "LAGS", "Followers", "Transitions", "batch_followers"]

# Followers are listed for this many of the user's most recent distinct items.
LAGS = 3
# Per entry: log(1 + count) and count / (all counts out of the earlier item).
FEATURES = 2


@dataclass(frozen=True, eq=False)
class Followers:
    """Followers of one sequence's recent items, with the counts of one moment.

    ``rows_lags`` is (E, 2) int32: the follower's row and the lag (0 for the
    most recent item) of the item it followed. ``counts`` is (E, 2) float32:
    the pair's count and the earlier item's total count.
    """

    rows_lags: Tensor
    counts: Tensor

    def __len__(self) -> int:
        return self.rows_lags.shape[0]


TENSOR_NAMES = frozenset({
    "transitions.earlier", "transitions.later", "transitions.count", "transitions.total_rows", "transitions.totals",
})
EMPTY = Followers(torch.zeros(0, 2, dtype=torch.int32), torch.zeros(0, 2))


class Transitions:
    """Counts of (earlier row -> later row) pairs, pruned to the commonest followers per row.

    ``update`` counts one pair. Each earlier row keeps at most
    ``max_followers`` followers. When it reaches twice that many, the rarest
    are dropped, so counts of rare pairs are approximate. Totals are kept
    exactly.

    >>> transitions = Transitions()
    >>> for earlier, later in [(1, 2), (1, 2), (1, 3), (2, 3)]:
    ...     transitions.update(earlier, later)
    >>> followers = transitions.followers([2, 1], per_item=5)  # 1 is the most recent, lag 0
    >>> followers.rows_lags.tolist(), followers.counts.tolist()
    ([[2, 0], [3, 0], [3, 1]], [[2.0, 3.0], [1.0, 3.0], [1.0, 1.0]])
    """

    def __init__(self, max_followers: int = 100) -> None:
        if isinstance(max_followers, bool) or not isinstance(max_followers, int) or max_followers < 1:
            raise ValueError(f"invalid max_followers {max_followers!r}: expected an integer of at least 1")
        self.max_followers = max_followers
        self._next: dict[int, Counter[int]] = {}
        self._totals: dict[int, float] = {}

    def __len__(self) -> int:
        """Number of rows with at least one follower."""
        return len(self._next)

    def update(self, earlier: int, later: int, weight: float = 1.0) -> None:
        """Count ``later`` after ``earlier`` with ``weight``; pairs of a row with itself are ignored."""
        if earlier == later:
            return
        followers = self._next.setdefault(earlier, Counter())
        followers[later] += weight
        self._totals[earlier] = self._totals.get(earlier, 0.0) + weight
        if len(followers) > 2 * self.max_followers:
            self._next[earlier] = Counter(dict(followers.most_common(self.max_followers)))

    def to_tensors(self) -> dict[str, Tensor]:
        """Return the counts as flat tensors for a checkpoint; :meth:`from_tensors` reads them back."""
        earlier = [row for row, followers in self._next.items() for _ in followers]
        later = [follower for followers in self._next.values() for follower in followers]
        counts = [count for followers in self._next.values() for count in followers.values()]
        return {
            "transitions.earlier": torch.tensor(earlier, dtype=torch.long),
            "transitions.later": torch.tensor(later, dtype=torch.long),
            "transitions.count": torch.tensor(counts, dtype=torch.float64),
            "transitions.total_rows": torch.tensor(list(self._totals), dtype=torch.long),
            "transitions.totals": torch.tensor(list(self._totals.values()), dtype=torch.float64),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], max_followers: int = 100) -> Transitions:
        """Rebuild counts saved by :meth:`to_tensors`; raises ValueError when a tensor is missing."""
        missing = sorted(TENSOR_NAMES - set(tensors))
        if missing:
            raise ValueError(f"missing transition tensors {missing}: expected the keys of Transitions.to_tensors()")
        transitions = cls(max_followers)
        pairs = zip(tensors["transitions.earlier"].tolist(), tensors["transitions.later"].tolist(),
                    tensors["transitions.count"].tolist())
        for earlier, later, count in pairs:
            transitions._next.setdefault(earlier, Counter())[later] = count
        transitions._totals = dict(zip(tensors["transitions.total_rows"].tolist(), tensors["transitions.totals"].tolist()))
        return transitions

    def followers(self, rows: Sequence[int], per_item: int = 30) -> Followers:
        """List the ``per_item`` commonest followers of each of the last ``LAGS`` distinct rows of ``rows``.

        ``rows`` is a sequence, oldest first. Lag 0 is its most recent
        distinct row. Rows that no one has followed yet give no entries.
        """
        recent: list[int] = []
        for row in reversed(rows):
            if row not in recent:
                recent.append(row)
                if len(recent) == LAGS:
                    break
        rows_lags: list[tuple[int, int]] = []
        counts: list[tuple[float, float]] = []
        for lag, row in enumerate(recent):
            followers = self._next.get(row)
            if not followers:
                continue
            total = float(self._totals[row])
            for follower, count in followers.most_common(per_item):
                rows_lags.append((follower, lag))
                counts.append((float(count), total))
        if not rows_lags:
            return EMPTY
        return Followers(torch.tensor(rows_lags, dtype=torch.int32), torch.tensor(counts, dtype=torch.float32))


def batch_followers(batch: Sequence[Followers | None], max_row: int) -> tuple[Tensor, Tensor, Tensor]:
    """Pad a batch of :class:`Followers` into tensors for :meth:`SequentialRanker.score`.

    Returns rows (B, E) int64, lags (B, E) int64 and features (B, E, F),
    with entries whose row is ``max_row`` or above dropped (the model has no
    embedding for them) and padding entries at row 0 with zero features.
    """
    kept = []
    for followers in batch:
        if followers is None or not len(followers):
            kept.append(None)
            continue
        mask = followers.rows_lags[:, 0] < max_row
        kept.append((followers.rows_lags[mask], followers.counts[mask]))
    width = max([0] + [len(entry[0]) for entry in kept if entry is not None])
    rows = torch.zeros(len(batch), width, dtype=torch.long)  # (B, E)
    lags = torch.zeros(len(batch), width, dtype=torch.long)  # (B, E)
    features = torch.zeros(len(batch), width, FEATURES)  # (B, E, F)
    for b, entry in enumerate(kept):
        if entry is None or not len(entry[0]):
            continue
        rows_lags, counts = entry
        n = rows_lags.shape[0]
        rows[b, :n] = rows_lags[:, 0].long()
        lags[b, :n] = rows_lags[:, 1].long()
        features[b, :n, 0] = torch.log1p(counts[:, 0])
        features[b, :n, 1] = counts[:, 0] / counts[:, 1]
    return rows, lags, features


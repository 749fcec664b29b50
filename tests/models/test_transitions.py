"""Transition counts and the ranker's transition bonus."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

import models.transitions
from models.ranker import RankerConfig, SequentialRanker
from models.recommender import Recommender, RecommenderConfig
from models.trainer import TrainerConfig
from models.transitions import Transitions, batch_followers
from state.sequences import SequenceStore
from streams.events import Event


def test_transitions_doctests_pass():
    failures, attempted = doctest.testmod(models.transitions)
    assert attempted > 0
    assert failures == 0


def test_followers_of_recent_distinct_items_by_lag():
    transitions = Transitions()
    for earlier, later in [(1, 2), (2, 3), (3, 4), (5, 6)]:
        transitions.update(earlier, later)
    # Most recent distinct rows: 3 (lag 0), 2 (lag 1), 1 (lag 2); 5 is too far back.
    followers = transitions.followers([5, 1, 2, 3, 3], per_item=5)
    assert followers.rows_lags.tolist() == [[4, 0], [3, 1], [2, 2]]


def test_self_pairs_are_ignored_and_followers_pruned():
    transitions = Transitions(max_followers=2)
    transitions.update(1, 1)
    assert len(transitions) == 0
    for later, times in [(2, 5), (3, 4), (4, 3), (5, 1), (6, 1)]:
        for _ in range(times):
            transitions.update(1, later)
    kept = transitions.followers([1], per_item=10)
    assert kept.rows_lags[:, 0].tolist() == [2, 3]
    assert kept.counts[:, 1].tolist() == [14.0, 14.0]  # the total stays exact


def test_invalid_max_followers_is_named():
    with pytest.raises(ValueError, match="max_followers 0"):
        Transitions(max_followers=0)


def test_batch_followers_drops_unknown_rows():
    transitions = Transitions()
    transitions.update(1, 2)
    transitions.update(1, 9)
    rows, lags, features = batch_followers([transitions.followers([1]), None], max_row=5)
    assert rows.tolist() == [[2], [0]]
    assert lags.tolist() == [[0], [0]]
    assert features[0, 0].tolist() == pytest.approx([math.log1p(1.0), 0.5])
    assert features[1].abs().sum() == 0


def test_follower_bonus_candidates_match_full_rows():
    model = SequentialRanker(RankerConfig(max_seq_len=4, dim=8, n_layers=1, n_heads=2, initial_item_capacity=16))
    with torch.no_grad():
        model.transition_weight.copy_(torch.tensor([[1.0, 2.0], [0.5, -1.0], [0.25, 0.0]]))
    transitions = Transitions()
    for earlier, later in [(1, 5), (1, 5), (1, 6), (2, 5), (3, 7)]:
        transitions.update(earlier, later)
    inputs = batch_followers([transitions.followers([3, 2, 1]), transitions.followers([2])], max_row=16)
    candidates = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 8]])
    with torch.no_grad():
        dense = model.follower_bonus(*inputs)  # (2, N)
        picked = model.follower_bonus(*inputs, candidates)
    assert torch.allclose(picked, dense.gather(1, candidates))
    # Row 5 followed lag 0 (row 1: 2 of 3) and lag 1 (row 2: 1 of 1) in the first sequence.
    expected = 1.0 * math.log1p(2) + 2.0 * 2 / 3 + 0.5 * math.log1p(1) - 1.0 * 1.0
    assert float(dense[0, 5]) == pytest.approx(expected, abs=1e-5)
    assert float(dense[1, 6]) == 0.0


def test_example_followers_exclude_own_event():
    rec = _recommender(transition_bonus=True)
    rec.observe(Event("e0", "u1", "a", "view", 1.0))
    rec.observe(Event("e1", "u1", "b", "view", 2.0))
    first = rec.pending[-1]
    assert len(first.followers) == 0  # a -> b was counted only after the example was made
    rec.observe(Event("e2", "u2", "a", "view", 3.0))
    rec.observe(Event("e3", "u2", "b", "view", 4.0))
    second = rec.pending[-1]
    assert second.followers.rows_lags.tolist() == [[rec.vocabulary.row("b"), 0]]


def _recommender(transition_bonus: bool) -> Recommender:
    ranker = RankerConfig(dim=16, n_layers=1, n_heads=2, max_seq_len=4, initial_item_capacity=512, dropout=0.0,
                          transition_bonus=transition_bonus)
    trainer = TrainerConfig(batch_size=32, n_negatives=32, learning_rate=3e-2)
    return Recommender(SequenceStore({}, ranker.max_seq_len), ranker, trainer,
                       RecommenderConfig(top_k=1, explain_reasons=False))


def _hits_on_a_fixed_successor_world(transition_bonus: bool) -> int:
    """Users walk a fixed random successor map over 300 items, each from a random start.

    After 400 short walks, count how often the top item is the true next one
    for 100 walks the model has not trained on.
    """
    generator = torch.Generator().manual_seed(4)
    successor = (torch.randperm(300, generator=generator) + 1).tolist()
    rec = _recommender(transition_bonus)

    def walk(user: str, n: int, first_ts: float) -> list[Event]:
        item = int(torch.randint(1, 301, (1,), generator=generator))
        events = []
        for step in range(n):
            events.append(Event(f"{user}-{step}", user, f"i{item}", "view", first_ts + step))
            item = successor[item - 1]
        return events

    for u in range(400):
        for event in walk(f"u{u}", 4, u * 10.0):
            rec.observe(event)
        while len(rec.pending) >= 32:
            rec.swap_scorer(*rec.learn(rec.take_batch(), len(rec.vocabulary)))
    hits = 0
    for u in range(100):
        *history, next_event = walk(f"held-out{u}", 3, 10_000.0 + u * 10)
        sequence = history and [rec.store.append(event)[1] for event in history][-1]
        ranked = rec.rank([sequence], k=1)[0]
        hits += bool(ranked) and ranked[0].item_id == next_event.item_id
    return hits


def test_transition_bonus_learns_a_successor_world_faster():
    # 400 walks of 3 steps cover each of the 300 successor pairs about 4 times,
    # so the counts contain the next item long before 300 embeddings learn it.
    with_bonus = _hits_on_a_fixed_successor_world(transition_bonus=True)
    without = _hits_on_a_fixed_successor_world(transition_bonus=False)
    assert with_bonus >= 70
    assert without < with_bonus - 30


def test_counts_survive_a_tensor_round_trip():
    transitions = Transitions()
    for earlier, later, weight in [(1, 2, 1.0), (1, 3, 0.5), (2, 3, 1.0)]:
        transitions.update(earlier, later, weight)
    restored = Transitions.from_tensors(transitions.to_tensors())
    first = transitions.followers([2, 1])
    second = restored.followers([2, 1])
    assert second.rows_lags.tolist() == first.rows_lags.tolist()
    assert second.counts.tolist() == first.counts.tolist()


def test_from_tensors_names_missing_tensors():
    tensors = Transitions().to_tensors()
    del tensors["transitions.totals"]
    with pytest.raises(ValueError, match="transitions.totals"):
        Transitions.from_tensors(tensors)

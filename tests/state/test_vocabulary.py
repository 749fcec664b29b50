"""Item vocabulary growth and time-decayed popularity."""

from __future__ import annotations

import pytest

from state.vocabulary import ItemVocabulary, Popularity


def test_vocabulary_grows_without_collisions():
    vocab = ItemVocabulary()
    rows = [vocab.add(f"i{n}") for n in range(1000)]
    assert rows == list(range(1, 1001))
    assert len(vocab) == 1001
    assert vocab.add("i500") == 501


def test_vocabulary_round_trip_through_items():
    vocab = ItemVocabulary(["a", "b"])
    restored = ItemVocabulary(vocab.items)
    assert restored.items == ["", "a", "b"]
    assert restored.row("b") == 2


def test_vocabulary_rejects_padding_row():
    vocab = ItemVocabulary(["a"])
    with pytest.raises(IndexError, match="row 0"):
        vocab.item_id(0)
    with pytest.raises(ValueError, match="non-empty"):
        vocab.add("")


def test_popularity_decays_by_half_life():
    pop = Popularity(half_life_s=100.0)
    pop.update("old", 0.0)
    pop.update("new", 200.0)
    assert pop.score("old") == pytest.approx(0.25)
    assert pop.score("new") == pytest.approx(1.0)


def test_popularity_top_excludes():
    pop = Popularity(half_life_s=100.0)
    for item, n in (("a", 3), ("b", 2), ("c", 1)):
        for _ in range(n):
            pop.update(item, 0.0)
    assert [item for item, _ in pop.top(2)] == ["a", "b"]
    assert [item for item, _ in pop.top(2, exclude={"a"})] == ["b", "c"]


def test_popularity_rebase_keeps_scores():
    pop = Popularity(half_life_s=1.0, top_cache_updates=1)
    pop.update("a", 0.0)
    pop.update("b", 59.0, weight=2.0)
    pop.update("c", 61.0)  # 61 half-lives after the reference time: the scale is rebased here
    assert [item for item, _ in pop.top(3)] == ["c", "b"]
    assert pop.score("b") == pytest.approx(0.5)
    assert pop.score("c") == pytest.approx(1.0)
    assert pop.score("a") == 0.0  # below 1e-12 of a fresh event: dropped at the rebase

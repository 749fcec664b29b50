"""The recommender core that the worker and the evaluation harness share."""

from __future__ import annotations

import pytest

from models.ranker import RankerConfig
from models.recommender import Recommender, RecommenderConfig
from models.trainer import TrainerConfig
from state.sequences import SequenceStore
from streams.events import Event

RANKER = RankerConfig(dim=16, n_layers=1, n_heads=2, max_seq_len=8, initial_item_capacity=16, dropout=0.0)
TRAINER = TrainerConfig(batch_size=4, n_negatives=8, learning_rate=1e-2)


def _recommender(**config) -> Recommender:
    return Recommender(SequenceStore({}, RANKER.max_seq_len), RANKER, TRAINER, RecommenderConfig(top_k=5, **config))


def _event(n: int, user: str = "u", item: str | None = None, kind: str = "view") -> Event:
    return Event(f"e{n}", user, item or f"i{n}", kind, 1_700_000_000.0 + n)


def _train(rec: Recommender) -> None:
    while len(rec.pending):
        result, snapshot = rec.learn(rec.take_batch(), len(rec.vocabulary))
        rec.swap_scorer(result, snapshot)


def test_first_event_queues_no_example():
    rec = _recommender()
    rec.observe(_event(0))
    assert len(rec.pending) == 0


def test_example_prefix_excludes_target():
    rec = _recommender()
    for n in range(3):
        rec.observe(_event(n))
    last = rec.pending[-1]
    assert last.target == rec.vocabulary.row("i2")
    assert last.item_seq == (rec.vocabulary.row("i0"), rec.vocabulary.row("i1"))


def test_redelivered_event_queues_nothing():
    rec = _recommender()
    rec.observe(_event(0))
    rec.observe(_event(1))
    observation = rec.observe(_event(1))
    assert not observation.appended
    assert len(rec.pending) == 1
    assert rec.stats.n_duplicates == 1


def test_popular_before_training():
    rec = _recommender()
    observations = [rec.observe(_event(n, user=f"u{n % 3}", item=f"i{n % 4}")) for n in range(12)]
    recommendations = rec.recommend(observations[-1:])
    assert recommendations[0].source == "popular"
    assert recommendations[0].model_version == 0
    assert len(recommendations[0].items) == 4


def test_ranker_serves_after_training():
    rec = _recommender()
    for n in range(40):
        rec.observe(_event(n, user=f"u{n % 4}", item=f"i{n % 7}"))
    _train(rec)
    out = rec.recommend([rec.observe(_event(100, user="u1", item="i3"))])[0]
    assert out.source == "ranker"
    assert out.model_version == rec.trainer.version > 0
    assert len(out.items) == 5
    assert out.items == sorted(out.items, key=lambda item: -item.score)


def test_purchases_excluded_everywhere():
    rec = _recommender()
    for n in range(40):
        rec.observe(_event(n, user=f"u{n % 4}", item=f"i{n % 7}"))
    _train(rec)
    observation = rec.observe(_event(200, user="u1", item="i2", kind="purchase"))
    ranked = rec.recommend([observation])[0]
    assert "i2" not in [item.item_id for item in ranked.items]
    rec.scorer_version = 0  # force the popular-now path
    popular = rec.recommend([observation])[0]
    assert popular.source == "popular"
    assert "i2" not in [item.item_id for item in popular.items]


def test_rank_honours_exclude():
    rec = _recommender()
    for n in range(40):
        rec.observe(_event(n, user=f"u{n % 4}", item=f"i{n % 7}"))
    _train(rec)
    sequence = rec.store.get("u1")
    ranked = rec.rank([sequence], k=6, exclude=[set(sequence.items)])[0]
    assert not {item.item_id for item in ranked} & set(sequence.items)


def test_pending_examples_bounded():
    rec = _recommender(max_pending_examples=5)
    for n in range(20):
        rec.observe(_event(n))
    assert len(rec.pending) == 5
    assert rec.stats.n_examples_dropped == 14
    assert rec.pending[-1].target == rec.vocabulary.row("i19")


def test_restore_serves_saved_weights():
    rec = _recommender()
    for n in range(40):
        rec.observe(_event(n, user=f"u{n % 4}", item=f"i{n % 7}"))
    _train(rec)
    restored = Recommender(SequenceStore(dict(rec.store.mapping), RANKER.max_seq_len), RANKER, TRAINER,
                           RecommenderConfig(top_k=5), rec.vocabulary)
    restored.restore(rec.trainer.model.state_dict(), rec.trainer.version)
    # restore() takes the weights only: restore_recommender brings the counts back from the checkpoint.
    restored.transitions = rec.transitions
    sequence = rec.store.get("u2")
    assert restored.scorer_version == rec.trainer.version
    assert [i.item_id for i in restored.rank([sequence])[0]] == [i.item_id for i in rec.rank([sequence])[0]]
    for a, b in zip(restored.rank([sequence])[0], rec.rank([sequence])[0]):
        assert a.score == pytest.approx(b.score, abs=1e-5)

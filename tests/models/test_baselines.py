"""Tests of the compared models: the contract checked on every model, and each model's own behaviour.

Ranker variants use a tiny architecture so that the whole file runs in
seconds. The real-log tests read the first 3,000 Taobao events in event-time order.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.baselines import (
    MODEL_NAMES,
    ComparisonConfig,
    CoVisitation,
    FrozenRanker,
    MostPopular,
    PopularNow,
    RecentItems,
    RetrainedRanker,
    RiverMF,
    SessionKNN,
    StreamrankRanker,
    build_models,
)
from models.baselines.base import Model, ScoringModel, top_items
from models.evaluation import prequential
from models.ranker import RankerConfig
from models.trainer import TrainerConfig
from streams.events import Event
from streams.formats import load_events
from streams.synthetic import SyntheticConfig, generate

TAOBAO = "taobao-userbehavior-sample/UserBehavior_head.csv"
TINY_RANKER = RankerConfig(max_seq_len=10, dim=16, n_layers=1, n_heads=2, dropout=0.0, initial_item_capacity=64)
TINY_TRAINER = TrainerConfig(learning_rate=5e-3, batch_size=16, n_negatives=16, replay_capacity=256)
TINY = ComparisonConfig(ranker=TINY_RANKER, trainer=TINY_TRAINER, n_epochs=1, fit_batch_size=64, retrain_every=300)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # Tiny models run fastest on one thread, and a second thread competing
    # for a busy core made these tests about 20 times slower on a 2-core machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def event(n: int, user: str, item: str, ts: float | None = None, kind: str = "view") -> Event:
    return Event(f"e{n}", user, item, kind, float(n) if ts is None else ts)


@pytest.fixture(scope="module")
def synthetic_events() -> list[Event]:
    return list(generate(SyntheticConfig(n_users=60, n_items=120, n_events=1_500, seed=4)))


@pytest.fixture(scope="module")
def taobao_slice(shared_data: Path) -> list[Event]:
    return load_events(shared_data / TAOBAO, "taobao", limit=3_000).events


# --- the contract, on every model ---


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_contract_on_every_model(name, synthetic_events):
    model = build_models([name], TINY)[0]
    users = sorted({e.user_id for e in synthetic_events})[:5]

    assert isinstance(model, Model)
    assert model.name == name
    assert model.recommend("nobody", 10, frozenset()) == []

    for e in synthetic_events[:800]:
        model.learn(e)
    model.end_warmup()
    for e in synthetic_events[800:]:
        model.learn(e)

    assert model.train_seconds > 0
    for user in users:
        first = model.recommend(user, 10, frozenset())
        again = model.recommend(user, 10, frozenset())
        assert first == again, "recommend changed the model's state"
        assert len(first) <= 10
        assert len(set(first)) == len(first)
        excluded = frozenset(first[:3])
        assert not excluded & set(model.recommend(user, 10, excluded))
        lists = model.recommend_lists(user, 10, [frozenset(), excluded])
        assert lists == [first, model.recommend(user, 10, excluded)]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_score_is_aligned_with_items(name, synthetic_events):
    model = build_models([name], TINY)[0]
    for e in synthetic_events[:400]:
        model.learn(e)
    model.end_warmup()
    if not isinstance(model, ScoringModel):
        pytest.skip(f"{name} has no score method")
    items = ["i1", "i2", "never-seen"]
    scores = model.score(synthetic_events[0].user_id, items)
    assert len(scores) == 3
    assert all(isinstance(value, float) for value in scores)


def test_build_models_rejects_unknown_and_repeated_names():
    with pytest.raises(ValueError, match="unknown model 'lstm'"):
        build_models(["popular", "lstm"])
    with pytest.raises(ValueError, match="'recent' is listed more than once"):
        build_models(["recent", "recent"])


def test_top_items_breaks_ties_by_mapping_order():
    assert top_items({"x": 1.0, "y": 1.0, "z": 2.0}, 3, frozenset()) == ["z", "x", "y"]


# --- popularity ---


def test_most_popular_counts_exactly():
    model = MostPopular()
    for n, item in enumerate(["a", "b", "b", "c", "c", "c", "a"]):
        model.learn(event(n, "u1", item))
    assert model.recommend("anyone", 3, frozenset()) == ["c", "b", "a"]
    assert model.recommend("anyone", 2, {"c"}) == ["b", "a"]
    assert model.score("anyone", ["a", "z"]) == [2.0, 0.0]


def test_popular_now_prefers_recent_items():
    model = PopularNow(half_life_s=10.0, top_cache_updates=1)
    for n in range(3):
        model.learn(event(n, "u1", "old", ts=0.0))
    for n in range(2):
        model.learn(event(10 + n, "u2", "new", ts=100.0))
    assert model.recommend("anyone", 2, frozenset()) == ["new", "old"]


# --- recent items ---


def test_recent_items_most_recent_first_and_unique():
    model = RecentItems(max_items=3)
    for n, item in enumerate(["a", "b", "c", "b", "d"]):
        model.learn(event(n, "u1", item))
    assert model.recommend("u1", 10, frozenset()) == ["d", "b", "c"]
    assert model.recommend("u2", 10, frozenset()) == []


def test_recent_items_empty_when_seen_excluded():
    model = RecentItems()
    for n, item in enumerate(["a", "b"]):
        model.learn(event(n, "u1", item))
    assert model.recommend("u1", 10, {"a", "b"}) == []


# --- co-visitation ---


def test_covisitation_weights_by_distance():
    model = CoVisitation(window=2)
    for n, item in enumerate(["a", "b", "c"]):
        model.learn(event(n, "u1", item))
    assert model.counts == {"a": {"b": 1.0, "c": 0.5}, "b": {"c": 1.0}}


def test_covisitation_recommends_followers_then_popular():
    model = CoVisitation()
    for n, item in enumerate(["a", "b", "z", "z", "z"]):
        model.learn(event(n, "u1" if n < 2 else "u9", item))
    model.learn(event(9, "u2", "a"))
    assert model.recommend("u2", 2, {"a"}) == ["b", "z"]


# --- session kNN ---


def test_sknn_splits_sessions_on_gap():
    model = SessionKNN(session_gap_s=100.0)
    model.learn(event(0, "u1", "a", ts=0.0))
    model.learn(event(1, "u1", "b", ts=50.0))
    model.learn(event(2, "u1", "c", ts=500.0))
    assert model.candidate_scores("u1") == {}  # the one past session shares no item with {c}


def test_sknn_recommends_items_of_similar_sessions():
    model = SessionKNN()
    for n, item in enumerate(["a", "b", "c"]):
        model.learn(event(n, "u1", item, ts=float(n)))
    for n, item in enumerate(["x", "y"]):
        model.learn(event(10 + n, "u3", item, ts=float(n)))
    model.learn(event(20, "u2", "a", ts=30.0))
    assert model.recommend("u2", 2, {"a"}) == ["b", "c"]


# --- River MF ---


def test_river_mf_scoring_creates_no_latents():
    model = RiverMF(seed=1)
    for n, item in enumerate(["a", "b", "c", "a"]):
        model.learn(event(n, "u1", item))
    n_users, n_items = len(model.mf.u_latents), len(model.mf.i_latents)
    model.score("stranger", ["a", "unknown"])
    model.recommend("stranger", 5, frozenset())
    assert len(model.mf.u_latents) == n_users
    assert len(model.mf.i_latents) == n_items


def test_river_mf_learns_positive_over_negative():
    model = RiverMF(n_negatives=2, seed=0)
    for n in range(300):
        model.learn(event(2 * n, f"u{n % 5}", "liked"))
        model.learn(event(2 * n + 1, "other", f"filler{n % 30}"))
    liked, filler = model.score("u1", ["liked", "filler3"])
    assert liked > filler


# --- the streamrank ranker ---


def test_ranker_serves_popular_until_trained():
    model = StreamrankRanker(TINY_RANKER, TINY_TRAINER)
    for n, item in enumerate(["a", "b", "b"]):
        model.learn(event(n, "u1", item))
    assert model.recommender.scorer_version == 0
    assert model.recommend("u1", 2, frozenset()) == ["b", "a"]


def test_ranker_takes_one_step_per_micro_batch(synthetic_events):
    model = StreamrankRanker(TINY_RANKER, TINY_TRAINER)
    for e in synthetic_events[:500]:
        model.learn(e)
    recommender = model.recommender
    assert recommender.scorer_version == recommender.stats.n_examples // TINY_TRAINER.batch_size
    assert len(recommender.pending) < TINY_TRAINER.batch_size


def test_ranker_recommend_does_not_learn(synthetic_events):
    model = StreamrankRanker(TINY_RANKER, TINY_TRAINER)
    for e in synthetic_events[:300]:
        model.learn(e)
    user = synthetic_events[299].user_id
    before = (model.recommender.scorer_version, len(model.recommender.pending),
              model.recommender.store.get(user).to_dict())
    model.recommend(user, 10, frozenset())
    model.score(user, ["i1"])
    after = (model.recommender.scorer_version, len(model.recommender.pending),
             model.recommender.store.get(user).to_dict())
    assert before == after


def test_frozen_ranker_keeps_weights_after_warmup(synthetic_events):
    model = FrozenRanker(TINY_RANKER, TINY_TRAINER, n_epochs=1, fit_batch_size=64)
    for e in synthetic_events[:400]:
        model.learn(e)
    model.end_warmup()
    version = model.recommender.scorer_version
    for e in synthetic_events[400:700]:
        model.learn(e)
    assert version > 0
    assert model.recommender.scorer_version == version
    assert model.n_fits == 1
    assert model.examples == []


def test_retrained_ranker_refits_on_schedule(synthetic_events):
    model = RetrainedRanker(TINY_RANKER, TINY_TRAINER, n_epochs=1, fit_batch_size=64, retrain_every=100)
    for e in synthetic_events[:300]:
        model.learn(e)
    assert model.n_fits == 0
    model.end_warmup()
    for e in synthetic_events[300:550]:
        model.learn(e)
    assert model.n_fits == 3  # warm-up end, then after 100 and 200 events
    assert len(model.examples) == model.recommender.stats.n_examples


# --- on a real log ---


@pytest.mark.shared_data
def test_recent_beats_popular_on_taobao(taobao_slice):
    models = [MostPopular(), RecentItems(), CoVisitation()]
    report = prequential(taobao_slice, models, protocols=("all",), progress=False)
    popular = report.result("popular").metric("all", "HR@10")
    recent = report.result("recent").metric("all", "HR@10")
    covisit = report.result("covisit").metric("all", "HR@10")
    assert recent > 5 * popular
    assert recent > 0.08
    assert covisit > 2 * popular


@pytest.mark.shared_data
def test_every_model_runs_on_taobao_slice(taobao_slice):
    models = build_models(MODEL_NAMES, TINY)
    report = prequential(taobao_slice, models, auc_every=5, progress=False)
    for result in report.models:
        hr = result.metric("all", "HR@20")
        assert hr is not None and 0.0 <= hr <= 1.0, result.name
        assert result.train_seconds > 0, result.name
    assert report.result("recent").metric("new_items", "HR@20") == 0.0
    assert report.result("sknn").metric("all", "HR@20") > report.result("popular").metric("all", "HR@20")

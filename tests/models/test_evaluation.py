"""Tests of the prequential harness: the test-then-train order, the protocols, and the outputs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

import pytest
import torch

from models.baselines import RecentItems, StreamrankRanker
from models.evaluation import prequential
from models.ranker import RankerConfig
from models.trainer import TrainerConfig
from streams.evaluate_cli import main as evaluate_main
from streams.events import Event
from streams.synthetic import SyntheticConfig, generate

TINY_RANKER = RankerConfig(max_seq_len=8, dim=16, n_layers=1, n_heads=2, dropout=0.0, initial_item_capacity=64)
TINY_TRAINER = TrainerConfig(batch_size=8, n_negatives=8, replay_capacity=64)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def event(n: int, user: str, item: str, kind: str = "view") -> Event:
    return Event(f"e{n}", user, item, kind, float(n))


# u1 repeats "a" at e3 and e5, and u2 arrives at e4.
STREAM = [
    event(0, "u1", "a"),
    event(1, "u1", "b"),
    event(2, "u1", "c"),
    event(3, "u1", "a"),
    event(4, "u2", "a", "purchase"),
    event(5, "u1", "a"),
    event(6, "u1", "d"),
    event(7, "u2", "b"),
]


class SpyModel:
    """Record every call, and recommend the items the user saw, most recent first."""

    name = "spy"

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.calls: list[tuple[str, ...]] = []
        self.excludes: list[tuple[str, frozenset[str]]] = []
        self.learned: list[Event] = []

    def recommend(self, user_id: str, k: int, exclude: AbstractSet[str]) -> list[str]:
        self.calls.append(("recommend", user_id))
        self.excludes.append((user_id, frozenset(exclude)))
        seen = [e.item_id for e in reversed(self.learned) if e.user_id == user_id]
        return [item for item in dict.fromkeys(seen) if item not in exclude][:k]

    def learn(self, event: Event) -> None:
        self.calls.append(("learn", event.event_id))
        self.learned.append(event)
        self.train_seconds += 1e-6

    def end_warmup(self) -> None:
        self.calls.append(("end_warmup",))


# --- the test-then-train order ---


def test_each_scored_event_is_recommended_before_learned():
    spy = SpyModel()
    prequential(STREAM, [spy], warmup_fraction=0.25, protocols=("all",), progress=False)
    expected = [("learn", "e0"), ("learn", "e1"), ("end_warmup",)]
    for e in STREAM[2:]:
        expected += [("recommend", e.user_id), ("learn", e.event_id)]
    assert spy.calls == expected


def test_warmup_events_are_learned_not_scored():
    spy = SpyModel()
    report = prequential(STREAM, [spy], warmup_fraction=0.5, protocols=("all",), progress=False)
    assert report.n_warmup == 4
    assert report.result("spy").tallies["all"]["overall"].n_events == 4
    assert [call for call in spy.calls if call[0] == "recommend"] == [("recommend", e.user_id) for e in STREAM[4:]]


def test_zero_warmup_ends_warmup_first():
    spy = SpyModel()
    prequential(STREAM, [spy], warmup_fraction=0.0, protocols=("all",), progress=False)
    assert spy.calls[0] == ("end_warmup",)
    assert spy.calls.count(("end_warmup",)) == 1


def test_ranker_state_excludes_event_when_scored():
    seen_state: list[tuple[str, list[str]]] = []

    class RecordingRanker(StreamrankRanker):
        def recommend_lists(self, user_id: str, k: int, excludes: Sequence[AbstractSet[str]]) -> list[list[str]]:
            seen_state.append((user_id, self.recommender.store.get(user_id).event_ids))
            return super().recommend_lists(user_id, k, excludes)

    events = list(generate(SyntheticConfig(n_users=20, n_items=50, n_events=300, seed=2)))
    model = RecordingRanker(TINY_RANKER, TINY_TRAINER)
    prequential(events, [model], warmup_fraction=0.5, protocols=("all",), progress=False)

    scored = events[150:]
    assert len(seen_state) == len(scored)
    for index, (e, (user, event_ids)) in enumerate(zip(scored, seen_state)):
        earlier = [p.event_id for p in events[: 150 + index] if p.user_id == e.user_id]
        assert user == e.user_id
        assert e.event_id not in event_ids
        assert event_ids == earlier[-TINY_RANKER.max_seq_len:]


# --- metrics through the harness ---


def test_recent_items_metrics_by_hand():
    report = prequential(STREAM, [RecentItems()], warmup_fraction=0.25, k_values=(1, 2), progress=False)
    result = report.result("recent")
    # Scored: e2..e7. Only e5 ("a" after [a, c, b]) hits, at rank 1. e3 finds "a" at
    # rank 3, beyond K, and e4 comes from a new user.
    assert result.metric("all", "HR@1") == pytest.approx(1 / 6)
    assert result.metric("all", "HR@2") == pytest.approx(1 / 6)
    assert result.metric("all", "MRR@2") == pytest.approx(1 / 6)
    assert result.metric("all", "HR@1", "user/new") == 0.0
    assert result.metric("all", "HR@1", "type/view") == pytest.approx(1 / 5)
    assert result.tallies["all"]["type/purchase"].n_events == 1


def test_new_items_protocol_scores_only_new_items():
    spy = SpyModel()
    report = prequential(STREAM, [spy], warmup_fraction=0.25, progress=False)
    tallies = report.result("spy").tallies
    # New to their user: e2 c, e4 a (u2), e6 d, e7 b; repeats: e3 a, e5 a.
    assert tallies["all"]["overall"].n_events == 6
    assert tallies["new_items"]["overall"].n_events == 4
    assert tallies["new_items"]["overall"].means()["HR@10"] == 0.0


def test_new_items_protocol_excludes_seen_items():
    spy = SpyModel()
    prequential(STREAM, [spy], warmup_fraction=0.25, progress=False)
    with_exclusions = [(user, exclude) for user, exclude in spy.excludes if exclude]
    assert with_exclusions == [
        ("u1", frozenset({"a", "b"})),  # e2
        ("u1", frozenset({"a", "b", "c"})),  # e6
        ("u2", frozenset({"a"})),  # e7
    ]


def test_new_user_gets_one_list_for_both_protocols():
    spy = SpyModel()
    prequential(STREAM, [spy], warmup_fraction=0.5, progress=False)
    u2_calls = [call for call in spy.calls if call == ("recommend", "u2")]
    assert len(u2_calls) == 3  # e4: one shared list; e7: one per protocol


def test_groups_split_users_items_and_windows():
    events = list(generate(SyntheticConfig(n_users=30, n_items=80, n_events=600, seed=1)))
    report = prequential(events, [RecentItems()], n_windows=4, protocols=("all",), progress=False)
    tallies = report.result("recent").tallies["all"]
    windows = [tallies[f"window/{w}"].n_events for w in range(4)]
    assert sum(windows) == tallies["overall"].n_events == 300
    assert max(windows) - min(windows) <= 1
    assert tallies["user/new"].n_events + tallies["user/returning"].n_events == 300
    assert tallies["item/new"].n_events + tallies["item/known"].n_events == 300
    assert tallies["item/new"].means()["HR@20"] == 0.0
    assert [w["first_event"] for w in report.windows] == [300, 375, 450, 525]


def test_auc_on_every_nth_known_item():
    events = list(generate(SyntheticConfig(n_users=30, n_items=300, n_events=400, seed=3)))
    report = prequential(events, [RecentItems()], auc_every=4, n_auc_negatives=20, progress=False)
    tallies = report.result("recent").tallies["all"]
    known_before = [e.item_id in {p.item_id for p in events[:index]} for index, e in enumerate(events)]
    expected = sum(known_before[index] for index in range(200, 400, 4))

    assert 0 < expected < 50
    assert tallies["overall"].n_auc == expected
    assert tallies["item/known"].n_auc == expected
    assert tallies["item/new"].n_auc == 0
    assert 0.0 <= tallies["overall"].means()["AUC"] <= 1.0


# --- misbehaving models and bad settings ---


class LeakyModel(SpyModel):
    """Ignore ``exclude``, which the contract forbids."""

    name = "leaky"

    def recommend(self, user_id: str, k: int, exclude: AbstractSet[str]) -> list[str]:
        return super().recommend(user_id, k, frozenset())


def test_model_returning_excluded_item_raises():
    with pytest.raises(ValueError, match="model 'leaky' returned the excluded item"):
        prequential(STREAM, [LeakyModel()], warmup_fraction=0.25, progress=False)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"warmup_fraction": 1.0}, "invalid warmup_fraction"),
        ({"k_values": (0,)}, "invalid k_values"),
        ({"protocols": ("fresh",)}, "invalid protocols"),
        ({"n_windows": 0}, "invalid n_windows"),
    ],
)
def test_invalid_settings_raise(settings, message):
    with pytest.raises(ValueError, match=message):
        prequential(STREAM, [SpyModel()], progress=False, **settings)


def test_unsorted_events_raise():
    with pytest.raises(ValueError, match="events are not sorted by ts: event 1"):
        prequential([STREAM[1], STREAM[0]], [SpyModel()], progress=False)


def test_duplicate_model_names_raise():
    with pytest.raises(ValueError, match="model names must be unique"):
        prequential(STREAM, [SpyModel(), SpyModel()], progress=False)


# --- outputs ---


def test_report_is_json_and_table_lists_models():
    report = prequential(STREAM, [SpyModel(), RecentItems()], warmup_fraction=0.25, progress=False)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert [model["name"] for model in data["models"]] == ["spy", "recent"]
    assert data["n_scored"] == 6
    assert data["models"][1]["protocols"]["new_items"]["overall"]["n_events"] == 4
    table = report.format_table("all")
    assert "HR@10" in table
    assert "recent" in table.splitlines()[-1]


def test_cli_writes_report_and_plots(tmp_path: Path, capsys):
    status = evaluate_main([
        "evaluate", "--format", "synthetic", "--n-events", "400", "--model", "recent", "--model", "popular",
        "--k", "5", "--out", str(tmp_path), "--no-progress",
    ])
    assert status == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert [model["name"] for model in report["models"]] == ["recent", "popular"]
    assert report["source"]["format"] == "synthetic"
    assert sorted(path.name for path in tmp_path.glob("*.png")) == [
        "auc.png", "hr_at_5.png", "map_at_5.png", "mrr_at_5.png", "ndcg_at_5.png",
    ]
    assert "protocol new_items" in capsys.readouterr().out


def test_cli_reports_missing_log(tmp_path: Path, capsys):
    status = evaluate_main(["evaluate", str(tmp_path / "absent.csv"), "--format", "taobao", "--no-progress"])
    assert status == 1
    assert "interaction log not found" in capsys.readouterr().err


# --- quality drift inside the harness ---


class SwitchingModel(SpyModel):
    """Always recommend item "x": right until the stream switches to item "y"."""

    name = "switching"

    def __init__(self) -> None:
        super().__init__()
        self.adaptations = 0

    def recommend(self, user_id: str, k: int, exclude: AbstractSet[str]) -> list[str]:
        return [item for item in ("x",) if item not in exclude]

    def adapt_to_drift(self) -> bool:
        self.adaptations += 1
        return True


def test_quality_drop_raises_alarm_and_adapts():
    stream = [event(n, f"u{n % 7}", "x" if n < 1500 else "y") for n in range(3000)]
    model = SwitchingModel()

    report = prequential(stream, [model], k_values=(10,), warmup_fraction=0.0, protocols=("all",), progress=False)
    alarms = report.result("switching").drift_alarms

    assert len(alarms) >= 1
    assert 1500 <= alarms[0]["index"] < 1700
    assert alarms[0]["signal"] == "reciprocal_rank"
    assert alarms[0]["adapted"] is True
    assert model.adaptations == len(alarms)
    assert json.loads(json.dumps(report.to_dict()))["models"][0]["drift_alarms"][0]["index"] == alarms[0]["index"]


def test_steady_quality_raises_no_alarm():
    stream = [event(n, f"u{n % 7}", "x") for n in range(3000)]
    report = prequential(stream, [SwitchingModel()], k_values=(10,), warmup_fraction=0.0, protocols=("all",),
                         progress=False)
    assert report.result("switching").drift_alarms == []

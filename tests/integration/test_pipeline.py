"""End-to-end tests on the real local broker: events in, recommendations and dead letters out."""

from __future__ import annotations

import base64
import json

import pytest

from streams.demo import INVALID_MESSAGES
from streams.events import Event
from streams.formats import load_events
from streams.replay import replay_events
from streams.synthetic import SyntheticConfig, generate

pytestmark = pytest.mark.kafka


def test_events_in_recommendations_out(run_settings, worker, collect):
    events = list(generate(SyntheticConfig(n_users=40, n_items=200, n_events=1500, seed=3)))
    worker.start()

    result = replay_events(run_settings, events, total=len(events), progress=False)
    recommendations = [m["value"] for m in collect(run_settings, run_settings.recommendations_topic, len(events))]

    assert result.n_sent == len(events)
    assert len(recommendations) == len(events)
    assert {r["event_id"] for r in recommendations} == {e.event_id for e in events}
    assert {r["user_id"] for r in recommendations} == {e.user_id for e in events}
    assert all(1 <= len(r["items"]) <= run_settings.top_k for r in recommendations)
    assert any(r["source"] == "ranker" for r in recommendations), "the ranker never served"
    assert max(r["model_version"] for r in recommendations) > 0


def test_recommendations_exclude_purchases(run_settings, worker, producer, collect):
    worker.start()
    user = "buyer"
    history = [
        Event(f"p{i}", user, f"item{i % 5}", "purchase" if i == 3 else "view", 1_700_000_000.0 + i)
        for i in range(8)
    ]
    for event in history:
        producer.send(run_settings.events_topic, key=user.encode(), value=event.to_json())
    producer.flush()

    recommendations = [m["value"] for m in collect(run_settings, run_settings.recommendations_topic, len(history))]

    after_purchase = [r for r in recommendations if r["event_id"] in {"p3", "p4", "p5", "p6", "p7"}]
    assert len(after_purchase) == 5
    for rec in after_purchase:
        assert "item3" not in [item["item_id"] for item in rec["items"]], rec


def test_invalid_messages_go_to_dlq(run_settings, worker, producer, collect):
    worker.start()
    valid = Event("ok-1", "u1", "i1", "view", 1_700_000_000.0)
    for key, value in INVALID_MESSAGES:
        producer.send(run_settings.events_topic, key=key, value=value)
    producer.send(run_settings.events_topic, key=b"u1", value=valid.to_json())
    producer.flush()

    dead = [m["value"] for m in collect(run_settings, run_settings.dlq_topic, len(INVALID_MESSAGES))]
    recommendations = [m["value"] for m in collect(run_settings, run_settings.recommendations_topic, 1)]

    assert len(dead) == len(INVALID_MESSAGES)
    sent_values = {value for _, value in INVALID_MESSAGES}
    assert {base64.b64decode(d["original_base64"]) for d in dead} == sent_values
    assert {d["field"] for d in dead} == {"$", "item_id", "type", "ts", "user_id", "key"}
    for letter in dead:
        assert letter["source"]["topic"] == run_settings.events_topic
        assert letter["source"]["offset"] >= 0
        assert letter["field"] in letter["error"]
    assert [r["event_id"] for r in recommendations] == ["ok-1"]
    assert worker.get("/stats/")["events_invalid"] == len(INVALID_MESSAGES)


def test_worker_restart_keeps_sequences(run_settings, worker, producer, collect):
    user = "returning"
    first = [Event(f"a{i}", user, f"i{i}", "view", 1_700_000_000.0 + i) for i in range(6)]
    worker.start()
    for event in first:
        producer.send(run_settings.events_topic, key=user.encode(), value=event.to_json())
    producer.flush()
    assert len(collect(run_settings, run_settings.recommendations_topic, len(first))) == len(first)
    before = worker.get(f"/users/{user}/")
    worker.stop()

    # Drop the local RocksDB files so the restarted worker must recover from the changelog topic.
    tables = run_settings.table_dir
    assert tables.exists()
    for path in sorted(tables.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    worker.start()
    after = worker.get(f"/users/{user}/")

    assert before["items"] == [e.item_id for e in first]
    assert after["items"] == before["items"]
    assert after["n_events"] == len(first)

    # A redelivered event is not appended twice, and a new one extends the recovered sequence.
    producer.send(run_settings.events_topic, key=user.encode(), value=first[-1].to_json())
    extra = Event("a6", user, "i6", "view", 1_700_000_010.0)
    producer.send(run_settings.events_topic, key=user.encode(), value=extra.to_json())
    producer.flush()
    assert len(collect(run_settings, run_settings.recommendations_topic, len(first) + 2)) == len(first) + 2
    final = worker.get(f"/users/{user}/")
    assert final["items"] == [e.item_id for e in first] + ["i6"]
    assert final["n_events"] == len(first) + 1


@pytest.mark.shared_data
def test_taobao_slice_every_user_recommended(run_settings, worker, shared_data, collect):
    loaded = load_events(shared_data / "taobao-userbehavior-sample" / "UserBehavior_head.csv", "taobao", limit=3000)
    events = loaded.events
    worker.start()

    replay_events(run_settings, events, total=len(events), progress=False)
    recommendations = [m["value"] for m in collect(run_settings, run_settings.recommendations_topic, len(events))]

    assert {r["user_id"] for r in recommendations} == {e.user_id for e in events}
    assert {r["event_id"] for r in recommendations} == {e.event_id for e in events}
    assert json.dumps(recommendations[0])  # serialisable as published

"""User sequences on a real rocksdict database and on a dict."""

from __future__ import annotations

import pytest

from state.sequences import MAX_PURCHASED, RocksDBMapping, SequenceStore, UserSequence
from streams.events import Event


def _event(n: int, user: str = "u1", item: str | None = None, kind: str = "view") -> Event:
    return Event(f"e{n}", user, item or f"i{n}", kind, 1_700_000_000.0 + n)


@pytest.fixture(params=["rocksdb", "dict"])
def mapping(request, tmp_path):
    if request.param == "dict":
        yield {}
        return
    db = RocksDBMapping(tmp_path / "sequences")
    yield db
    db.close()


def test_append_keeps_last_max_seq_len(mapping):
    store = SequenceStore(mapping, max_seq_len=3)
    for n in range(5):
        store.append(_event(n))
    sequence = store.get("u1")
    assert sequence.items == ["i2", "i3", "i4"]
    assert sequence.ts == [1_700_000_002.0, 1_700_000_003.0, 1_700_000_004.0]
    assert sequence.n_events == 5


def test_append_returns_before_and_after(mapping):
    store = SequenceStore(mapping, max_seq_len=10)
    store.append(_event(0))
    before, after, appended = store.append(_event(1))
    assert before.items == ["i0"]
    assert after.items == ["i0", "i1"]
    assert appended


def test_redelivered_event_not_appended(mapping):
    store = SequenceStore(mapping, max_seq_len=10)
    store.append(_event(0))
    _, after, appended = store.append(_event(0))
    assert not appended
    assert store.get("u1").items == ["i0"]
    assert after.n_events == 1


def test_purchases_remembered_past_window(mapping):
    store = SequenceStore(mapping, max_seq_len=2)
    store.append(_event(0, item="bought", kind="purchase"))
    for n in range(1, 6):
        store.append(_event(n))
    sequence = store.get("u1")
    assert "bought" not in sequence.items
    assert sequence.purchased == ["bought"]


def test_users_kept_apart(mapping):
    store = SequenceStore(mapping, max_seq_len=5)
    store.append(_event(0, user="a"))
    store.append(_event(1, user="b"))
    assert store.get("a").items == ["i0"]
    assert store.get("b").items == ["i1"]
    assert len(store.get("nobody")) == 0


def test_purchases_bounded():
    sequence = UserSequence()
    for n in range(MAX_PURCHASED + 10):
        sequence.append(_event(n, kind="purchase"), max_seq_len=5)
    assert len(sequence.purchased) == MAX_PURCHASED
    assert sequence.purchased[-1] == f"i{MAX_PURCHASED + 9}"


def test_rocksdb_survives_reopen(tmp_path):
    db = RocksDBMapping(tmp_path / "db")
    SequenceStore(db, max_seq_len=5).append(_event(0))
    db.close()
    reopened = RocksDBMapping(tmp_path / "db")
    assert SequenceStore(reopened, max_seq_len=5).get("u1").items == ["i0"]
    assert list(reopened) == ["u1"]
    assert len(reopened) == 1
    del reopened["u1"]
    assert "u1" not in reopened
    reopened.close()


def test_invalid_max_seq_len():
    with pytest.raises(ValueError, match="max_seq_len must be at least 1, got 0"):
        SequenceStore({}, max_seq_len=0)

"""Tests of the interaction log readers.

The real logs are read in place from the shared data directory, and the
expected counts are those published with each log. Layout variants and
malformed rows use small made-up files under ``tmp_path``.
"""

from __future__ import annotations

import functools
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from streams.events import EVENT_TYPES
from streams.formats import FORMATS, LoadResult, MalformedRow, load_events

TAOBAO = "taobao-userbehavior-sample/UserBehavior_head.csv"
MOVIELENS = "movielens-latest-small"
YOOCHOOSE_TRAIN = "yoochoose-clicks-sample/yoochoose-clicks-100k_train_full.txt"
YOOCHOOSE_TEST = "yoochoose-clicks-sample/yoochoose-clicks-100k_test.txt"
DIGINETICA = "diginetica-sample/sample_train-item-views.csv"
OTTO = "otto-sample/train_fixture.jsonl"
REAL_LOGS = [
    (TAOBAO, "taobao"),
    (MOVIELENS, "movielens"),
    (YOOCHOOSE_TRAIN, "yoochoose"),
    (YOOCHOOSE_TEST, "yoochoose"),
    (DIGINETICA, "diginetica"),
    (OTTO, "otto"),
]


@functools.cache
def _load_full(path: Path, fmt: str) -> LoadResult:
    """Load each real log once per test run; tests must not change the result."""
    return load_events(path, fmt)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def _line_of(event_id: str) -> int:
    return int(event_id.split(":")[2])


# Invariants that hold for every real log.


@pytest.mark.shared_data
@pytest.mark.parametrize(("relative", "fmt"), REAL_LOGS)
def test_real_log_invariants(shared_data: Path, relative: str, fmt: str) -> None:
    result = _load_full(shared_data / relative, fmt)
    timestamps = [event.ts for event in result.events]

    assert result.malformed == []
    assert len(result.events) == result.n_rows
    assert timestamps == sorted(timestamps)
    assert all(isinstance(event.user_id, str) for event in result.events)
    assert all(isinstance(event.item_id, str) for event in result.events)
    assert len({event.event_id for event in result.events}) == len(result.events)
    assert {event.type for event in result.events} <= set(EVENT_TYPES)


@pytest.mark.shared_data
@pytest.mark.parametrize(("relative", "fmt"), REAL_LOGS)
def test_real_log_limit_prefix(shared_data: Path, relative: str, fmt: str) -> None:
    full = _load_full(shared_data / relative, fmt)
    limited = load_events(shared_data / relative, fmt, limit=200)

    assert limited.events == full.events[:200]
    assert limited.n_rows == full.n_rows


@pytest.mark.shared_data
def test_real_log_ties_keep_file_order(shared_data: Path) -> None:
    events = _load_full(shared_data / TAOBAO, "taobao").events
    tied_pairs = [(a, b) for a, b in zip(events, events[1:]) if a.ts == b.ts]

    assert len(tied_pairs) > 1000
    assert all(_line_of(a.event_id) < _line_of(b.event_id) for a, b in tied_pairs)


# Published statistics of each real log.


@pytest.mark.shared_data
def test_taobao_counts(shared_data: Path) -> None:
    result = _load_full(shared_data / TAOBAO, "taobao")
    types = Counter(event.type for event in result.events)

    assert result.n_rows == 84_475
    assert types["view"] == 75_872
    assert types["add_to_cart"] == 4_497 + 2_356
    assert types["purchase"] == 1_750
    assert len({event.user_id for event in result.events}) == 815
    assert len({event.item_id for event in result.events}) == 55_368
    assert len({event.category for event in result.events}) == 2_914
    assert result.events[0].ts == 1_505_117_799
    assert result.events[-1].ts == 1_512_316_763


@pytest.mark.shared_data
def test_taobao_first_row_mapping(shared_data: Path) -> None:
    events = _load_full(shared_data / TAOBAO, "taobao").events
    first_row = next(event for event in events if event.event_id == "taobao:UserBehavior_head.csv:1")

    assert first_row.user_id == "1"
    assert first_row.item_id == "2268318"
    assert first_row.category == "2520377"
    assert first_row.type == "view"
    assert first_row.ts == 1_511_544_070


@pytest.mark.shared_data
def test_movielens_directory_counts(shared_data: Path) -> None:
    result = _load_full(shared_data / MOVIELENS, "movielens")
    ratings = Counter(event.value for event in result.events)

    assert result.n_rows == 100_836
    assert len({event.user_id for event in result.events}) == 610
    assert len({event.item_id for event in result.events}) == 9_724
    assert ratings[4.0] == 26_818
    assert ratings[0.5] == 1_370
    assert {event.type for event in result.events} == {"rating"}
    assert result.events[0].ts == 828_124_615
    assert result.events[-1].ts == 1_537_799_250
    assert result.events[0].event_id.startswith("movielens:ratings.csv:")


@pytest.mark.shared_data
def test_movielens_file_path_same_as_directory(shared_data: Path) -> None:
    from_file = load_events(shared_data / MOVIELENS / "ratings.csv", "movielens", limit=50)
    from_directory = _load_full(shared_data / MOVIELENS, "movielens")

    assert from_file.events == from_directory.events[:50]


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("relative", "n_rows", "n_sessions", "n_items"),
    [(YOOCHOOSE_TRAIN, 70_278, 17_794, 2_933), (YOOCHOOSE_TEST, 13_568, 3_416, 1_771)],
)
def test_yoochoose_prepared_counts(shared_data: Path, relative: str, n_rows: int, n_sessions: int, n_items: int) -> None:
    result = _load_full(shared_data / relative, "yoochoose")

    assert result.n_rows == n_rows
    assert len({event.user_id for event in result.events}) == n_sessions
    assert len({event.item_id for event in result.events}) == n_items
    assert {event.type for event in result.events} == {"click"}


@pytest.mark.shared_data
def test_yoochoose_test_follows_train(shared_data: Path) -> None:
    train = _load_full(shared_data / YOOCHOOSE_TRAIN, "yoochoose")
    test = _load_full(shared_data / YOOCHOOSE_TEST, "yoochoose")

    assert train.events[0].ts == pytest.approx(_utc("2014-04-01T01:02:21"), abs=1.0)
    assert train.events[-1].ts < test.events[0].ts
    assert test.events[-1].ts == pytest.approx(_utc("2014-04-08T00:50:01"), abs=1.0)


@pytest.mark.shared_data
def test_diginetica_counts(shared_data: Path) -> None:
    result = _load_full(shared_data / DIGINETICA, "diginetica")

    assert result.n_rows == 12_391
    assert len({event.user_id for event in result.events}) == 2_986
    assert len({event.item_id for event in result.events}) == 7_139
    assert {event.type for event in result.events} == {"view"}
    assert result.events[0].ts >= _utc("2016-01-03T00:00:00")
    assert result.events[0].ts < _utc("2016-01-04T00:00:00")
    assert result.events[-1].ts < _utc("2016-06-02T00:00:00") + 1_199.958


@pytest.mark.shared_data
def test_diginetica_first_row_mapping(shared_data: Path) -> None:
    events = _load_full(shared_data / DIGINETICA, "diginetica").events
    first_row = next(event for event in events if event.event_id == "diginetica:sample_train-item-views.csv:2")

    assert first_row.user_id == "1"
    assert first_row.item_id == "81766"
    assert first_row.ts == pytest.approx(_utc("2016-05-09T00:00:00") + 526.309)


@pytest.mark.shared_data
def test_otto_counts(shared_data: Path) -> None:
    result = _load_full(shared_data / OTTO, "otto")
    types = Counter(event.type for event in result.events)

    assert result.n_rows == 862
    assert len({event.user_id for event in result.events}) == 20
    assert len({event.item_id for event in result.events}) == 510
    assert types == {"click": 800, "add_to_cart": 52, "purchase": 10}
    assert result.events[0].ts == pytest.approx(1_659_304_800.025)
    assert result.events[-1].ts == pytest.approx(1_661_723_997.885)
    assert result.events[0].event_id == "otto:train_fixture.jsonl:1:0"


# Layout variants and malformed rows, on made-up files.


def test_taobao_malformed_rows_reported(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "log.csv",
        "1,10,100,pv,1511544070\n"
        "1,11,100\n"
        "1,12,100,pv,soon\n"
        "\n"
        "1,13,100,like,1511544071\n"
        " ,14,100,buy,1511544072\n"
        "1,15,100,cart,1511544073000\n"
        "2,16,101,fav,1511544074\n",
    )
    result = load_events(path, "taobao")
    reasons = {row.line: row.reason for row in result.malformed}

    assert result.n_rows == 7
    assert [event.item_id for event in result.events] == ["10", "16"]
    assert sorted(reasons) == [2, 3, 5, 6, 7]
    assert "expected 5 columns" in reasons[2]
    assert "'timestamp'" in reasons[3]
    assert "'soon'" in reasons[3]
    assert "'behavior_type'" in reasons[5]
    assert "'like'" in reasons[5]
    assert "'user_id'" in reasons[6]
    assert "milliseconds" in reasons[7]
    assert result.malformed[0] == MalformedRow(str(path), 2, reasons[2])


def test_taobao_type_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, "log.csv", "1,10,7,pv,100\n1,10,7,cart,101\n1,10,7,fav,102\n1,10,7,buy,103\n")
    result = load_events(path, "taobao")

    assert [event.type for event in result.events] == ["view", "add_to_cart", "add_to_cart", "purchase"]
    assert {event.category for event in result.events} == {"7"}


def test_sort_is_stable_on_ties(tmp_path: Path) -> None:
    # Twelve rows, so that line 10 sorts before line 2 as a string.
    rows = [f"{line},i{line},7,pv,{200 if line % 2 else 100}\n" for line in range(1, 13)]
    path = _write(tmp_path, "log.csv", "".join(rows))
    result = load_events(path, "taobao")

    assert [event.item_id for event in result.events[:6]] == ["i2", "i4", "i6", "i8", "i10", "i12"]
    assert [event.item_id for event in result.events[6:]] == ["i1", "i3", "i5", "i7", "i9", "i11"]


def test_limit_cuts_sorted_stream(tmp_path: Path) -> None:
    path = _write(tmp_path, "log.csv", "1,a,7,pv,300\n1,b,7,pv,100\n1,c,7,pv,200\n1,d,7,oops,50\n")
    result = load_events(path, "taobao", limit=2)

    assert [event.item_id for event in result.events] == ["b", "c"]
    assert result.n_rows == 4
    assert len(result.malformed) == 1
    assert load_events(path, "taobao", limit=0).events == []
    assert len(load_events(path, "taobao", limit=10).events) == 3


def test_negative_limit_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "log.csv", "1,a,7,pv,300\n")

    with pytest.raises(ValueError, match="-1"):
        load_events(path, "taobao", limit=-1)


def test_unknown_format_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "log.csv", "1,a,7,pv,300\n")

    with pytest.raises(ValueError, match="'tmall'") as info:
        load_events(path, "tmall")
    assert all(name in str(info.value) for name in FORMATS)


def test_missing_file_raises(tmp_path: Path) -> None:
    missing = tmp_path / "absent.csv"

    with pytest.raises(FileNotFoundError, match="absent.csv"):
        load_events(missing, "taobao")


def test_long_file_name_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "x" * 240 + ".csv", "1,a,7,pv,300\n")

    with pytest.raises(ValueError, match="file name too long"):
        load_events(path, "taobao")


def test_directory_rejected_for_file_format(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="taobao"):
        load_events(tmp_path, "taobao")


def test_invalid_utf8_row_malformed(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"1,a,7,pv,100\n1,\xff\xfe,7,pv,101\n1,c,7,pv,102\n")
    result = load_events(path, "taobao")

    assert [event.item_id for event in result.events] == ["a", "c"]
    assert [row.line for row in result.malformed] == [2]
    assert "UTF-8" in result.malformed[0].reason


def test_movielens_dat_layout(tmp_path: Path) -> None:
    path = _write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::x::978302109\n2::914::3::978301968\n")
    result = load_events(path, "movielens")

    assert [(event.user_id, event.item_id, event.value) for event in result.events] == [("1", "1193", 5.0), ("2", "914", 3.0)]
    assert result.events[0].event_id == "movielens:ratings.dat:1"
    assert [row.line for row in result.malformed] == [2]
    assert "'rating'" in result.malformed[0].reason


def test_movielens_u_data_layout(tmp_path: Path) -> None:
    path = _write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\n")
    result = load_events(path, "movielens")

    assert [event.item_id for event in result.events] == ["242", "302"]
    assert {event.type for event in result.events} == {"rating"}
    assert [row.line for row in result.malformed] == [3]


def test_movielens_csv_without_header(tmp_path: Path) -> None:
    path = _write(tmp_path, "ratings.csv", "1,31,2.5,1260759144\n")
    result = load_events(path, "movielens")

    assert [event.event_id for event in result.events] == ["movielens:ratings.csv:1"]


def test_movielens_directory_picks_ratings_file(tmp_path: Path) -> None:
    _write(tmp_path, "u.data", "196\t242\t3\t881250949\n")
    _write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n")
    result = load_events(tmp_path, "movielens")

    assert [event.event_id for event in result.events] == ["movielens:ratings.csv:2"]


def test_movielens_directory_without_ratings(tmp_path: Path) -> None:
    _write(tmp_path, "movies.csv", "movieId,title,genres\n")

    with pytest.raises(FileNotFoundError, match="ratings.csv"):
        load_events(tmp_path, "movielens")


def test_yoochoose_clicks_dat_layout(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "yoochoose-clicks.dat",
        "1,2014-04-07T10:51:09.277Z,214536502,0\n"
        "1,2014-04-07T10:54:09.868Z,214536500,S\n"
        "2,yesterday,214662742,0\n"
        "2,2014-04-07T13:56:37.614Z,214662742,1234567\n",
    )
    result = load_events(path, "yoochoose")

    assert [event.category for event in result.events] == ["0", "S", "1234567"]
    assert result.events[0].ts == pytest.approx(_utc("2014-04-07T10:51:09.277"))
    assert {event.type for event in result.events} == {"click"}
    assert [row.line for row in result.malformed] == [3]
    assert "'timestamp'" in result.malformed[0].reason


def test_yoochoose_buys_dat_layout(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "yoochoose-buys.dat",
        "420374,2014-04-06T18:44:58.314Z,214537888,12462,1\n420374,2014-04-06T18:44:58.325Z,214537850,free,1\n",
    )
    result = load_events(path, "yoochoose")

    assert [(event.user_id, event.type, event.value) for event in result.events] == [("420374", "purchase", 12462.0)]
    assert "'price'" in result.malformed[0].reason


def test_yoochoose_prepared_bad_time(tmp_path: Path) -> None:
    path = _write(tmp_path, "clicks.txt", "SessionId\tItemId\tTime\n3\t9\t1396437466.94\n3\t8\tNaN\n")
    result = load_events(path, "yoochoose")

    assert [event.ts for event in result.events] == [1396437466.94]
    assert [row.line for row in result.malformed] == [3]


def test_diginetica_camel_case_header(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "train-item-views.csv",
        "sessionId;userId;itemId;timeframe;eventdate\n1;NA;81766;526309;2016-05-09\n1;NA;31331;1031018;2016-05-09\n2;7;5;10;2016-13-01\n",
    )
    result = load_events(path, "diginetica")

    assert [event.item_id for event in result.events] == ["81766", "31331"]
    assert result.events[1].ts == pytest.approx(_utc("2016-05-09T00:00:00") + 1031.018)
    assert {event.user_id for event in result.events} == {"1"}
    assert [row.line for row in result.malformed] == [4]
    assert "'eventdate'" in result.malformed[0].reason


def test_diginetica_header_missing_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "views.csv", "session_id;user_id;item_id;eventdate\n1;NA;81766;2016-05-09\n")

    with pytest.raises(ValueError, match="'timeframe'"):
        load_events(path, "diginetica")


def test_retailrocket_layout(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "events.csv",
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n"
        "1433224214164,992329,addtocart,248676,\n"
        "1433224214165,992329,transaction,248676,4000\n"
        "1433224214166,992329,like,248676,\n",
    )
    result = load_events(path, "retailrocket")

    assert [event.type for event in result.events] == ["view", "add_to_cart", "purchase"]
    assert result.events[0].ts == pytest.approx(1433221332.117)
    assert result.events[0].user_id == "257597"
    assert [row.line for row in result.malformed] == [5]
    assert "'like'" in result.malformed[0].reason


def test_jsonl_bad_line_reported(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "events.jsonl",
        '{"event_id":"e1","user_id":"u1","item_id":"i1","type":"view","ts":20}\n'
        "{not json\n"
        '{"event_id":"e2","user_id":"u1","item_id":"i1","type":"like","ts":10}\n'
        "\n"
        '{"event_id":"e3","user_id":"u2","item_id":"i2","type":"rating","ts":10,"value":4.5}\n',
    )
    result = load_events(path, "jsonl")

    assert [event.event_id for event in result.events] == ["e3", "e1"]
    assert result.n_rows == 4
    assert [row.line for row in result.malformed] == [2, 3]
    assert "not valid JSON" in result.malformed[0].reason
    assert "'type'" in result.malformed[1].reason


def test_otto_seconds_variant(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "train.jsonl",
        '{"session":5,"events":[{"aid":9,"ts":1659304800,"type":"clicks"},{"aid":9,"ts":1659304801,"type":"carts"}]}\n'
        '{"session":6,"events":[{"aid":7,"ts":1659304800500,"type":"orders"}]}\n',
    )
    result = load_events(path, "otto")

    assert [event.ts for event in result.events] == [1659304800.0, 1659304800.5, 1659304801.0]
    assert [event.type for event in result.events] == ["click", "purchase", "add_to_cart"]
    assert result.events[2].event_id == "otto:train.jsonl:1:1"


def test_otto_malformed_events_reported(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "train.jsonl",
        '{"session":5,"events":[{"aid":9,"ts":1659304800000,"type":"views"},{"aid":8,"ts":1659304800000,"type":"clicks"}]}\n'
        '{"session":6}\n'
        "[1, 2\n"
        '{"session":7,"events":[{"aid":9,"type":"clicks"}]}\n',
    )
    result = load_events(path, "otto")
    reasons = [(row.line, row.reason) for row in result.malformed]

    assert [event.item_id for event in result.events] == ["8"]
    assert result.n_rows == 5
    assert [line for line, _ in reasons] == [1, 2, 3, 4]
    assert "event 0" in reasons[0][1]
    assert "'views'" in reasons[0][1]
    assert "'events'" in reasons[1][1]
    assert "not valid JSON" in reasons[2][1]
    assert "'ts'" in reasons[3][1]

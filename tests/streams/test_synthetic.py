"""Tests of the seeded synthetic event generator."""

from __future__ import annotations

import doctest
from collections import Counter, defaultdict

import pytest

import streams.synthetic
from streams.events import EVENT_TYPES, validate_event
from streams.synthetic import SyntheticConfig, generate

SMALL = SyntheticConfig(n_users=50, n_items=300, n_clusters=6, n_events=5000, seed=3)


def _views_by_user(events: list) -> dict[str, list]:
    views = defaultdict(list)
    for event in events:
        if event.type == "view":
            views[event.user_id].append(event)
    return views


def test_synthetic_doctest_passes() -> None:
    failures, attempted = doctest.testmod(streams.synthetic)

    assert attempted > 0
    assert failures == 0


def test_same_seed_same_events() -> None:
    assert list(generate(SMALL)) == list(generate(SMALL))


def test_other_seed_other_events() -> None:
    other = SyntheticConfig(n_users=50, n_items=300, n_clusters=6, n_events=5000, seed=4)
    first = [(event.user_id, event.item_id, event.type) for event in generate(SMALL)]
    second = [(event.user_id, event.item_id, event.type) for event in generate(other)]

    assert first != second


def test_event_count_and_ids() -> None:
    events = list(generate(SMALL))

    assert len(events) == 5000
    assert events[0].event_id == "syn-3-0"
    assert events[-1].event_id == "syn-3-4999"
    assert len({event.event_id for event in events}) == 5000


def test_zero_events_is_empty() -> None:
    assert list(generate(SyntheticConfig(n_events=0))) == []


def test_ts_order_and_start() -> None:
    events = list(generate(SMALL))
    timestamps = [event.ts for event in events]
    mean_gap_s = (timestamps[-1] - timestamps[0]) / (len(timestamps) - 1)

    assert timestamps == sorted(timestamps)
    assert timestamps[0] == SMALL.start_ts
    assert mean_gap_s == pytest.approx(SMALL.mean_gap_s, rel=0.1)


def test_events_pass_schema() -> None:
    events = list(generate(SMALL))

    assert all(validate_event(event.to_dict()) == event for event in events)
    assert {event.type for event in events} <= set(EVENT_TYPES)
    assert {event.user_id for event in events} <= {f"u{u}" for u in range(SMALL.n_users)}
    assert {event.item_id for event in events} <= {f"i{i}" for i in range(SMALL.n_items)}
    assert {event.category for event in events} <= {f"c{c}" for c in range(SMALL.n_clusters)}


def test_funnel_rates() -> None:
    types = Counter(event.type for event in generate(SyntheticConfig(seed=1)))
    cart_per_view = types["add_to_cart"] / types["view"]
    purchase_per_cart = types["purchase"] / types["add_to_cart"]

    assert cart_per_view == pytest.approx(0.15, abs=0.02)
    assert purchase_per_cart == pytest.approx(0.3, abs=0.04)


def test_purchase_follows_cart_and_view() -> None:
    seen: dict[str, set[tuple[str, str]]] = {event_type: set() for event_type in EVENT_TYPES}
    n_purchases = 0
    for event in generate(SMALL):
        key = (event.user_id, event.item_id)
        if event.type == "add_to_cart":
            assert key in seen["view"], f"add_to_cart without an earlier view: {event}"
        if event.type == "purchase":
            assert key in seen["add_to_cart"], f"purchase without an earlier add_to_cart: {event}"
            n_purchases += 1
        seen[event.type].add(key)

    assert n_purchases > 50


def test_items_keep_their_cluster() -> None:
    category_of_item: dict[str, set[str]] = defaultdict(set)
    for event in generate(SMALL):
        category_of_item[event.item_id].add(event.category)

    assert all(len(categories) == 1 for categories in category_of_item.values())


def test_users_stay_in_their_clusters() -> None:
    config = SyntheticConfig(n_users=100, n_items=500, n_clusters=10, clusters_per_user=2, n_events=20000, seed=5)
    shares = []
    for views in _views_by_user(list(generate(config))).values():
        if len(views) >= 20:
            top_two = Counter(event.category for event in views).most_common(2)
            shares.append(sum(count for _, count in top_two) / len(views))

    assert len(shares) > 80
    assert min(shares) > 0.75
    assert sum(shares) / len(shares) > 0.9


def test_popularity_is_skewed() -> None:
    config = SyntheticConfig(n_users=200, n_items=1000, n_clusters=1, clusters_per_user=1, n_events=20000, seed=2)
    counts = Counter(event.item_id for event in generate(config) if event.type == "view")
    top_ten = sum(count for _, count in counts.most_common(10))

    assert top_ten / sum(counts.values()) > 0.3


def test_next_item_is_predictable() -> None:
    # A view goes to the next-ranked item with probability related_item_prob, so
    # each item's most common successor follows it far more often than chance.
    successors: dict[str, Counter[str]] = defaultdict(Counter)
    for views in _views_by_user(list(generate(SyntheticConfig(seed=6)))).values():
        for previous, following in zip(views, views[1:]):
            successors[previous.item_id][following.item_id] += 1
    n_pairs = sum(sum(counter.values()) for counter in successors.values())
    n_top = sum(counter.most_common(1)[0][1] for counter in successors.values())

    assert n_top / n_pairs > 0.3


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n_users", 0, "n_users 0"),
        ("n_items", 5, "n_items 5"),
        ("n_clusters", 0, "n_clusters 0"),
        ("clusters_per_user", 11, "clusters_per_user 11"),
        ("n_events", -1, "n_events -1"),
        ("n_events", 2.5, "n_events 2.5"),
        ("zipf_exponent", -0.5, "zipf_exponent -0.5"),
        ("zipf_exponent", float("nan"), "zipf_exponent nan"),
        ("mean_gap_s", 0.0, "mean_gap_s 0.0"),
        ("add_to_cart_prob", 1.5, "add_to_cart_prob 1.5"),
        ("purchase_prob", -0.1, "purchase_prob -0.1"),
        ("related_item_prob", 2, "related_item_prob 2"),
        ("mean_session_views", 0.5, "mean_session_views 0.5"),
        ("n_active_sessions", 0, "n_active_sessions 0"),
        ("start_ts", 1.7e12, "start_ts 1700000000000.0"),
        ("seed", "7", "seed '7'"),
        ("seed", True, "seed True"),
    ],
)
def test_config_rejects_invalid(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyntheticConfig(**{field: value})

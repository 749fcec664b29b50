"""A seeded generator of synthetic e-commerce events with known structure.

Items are split into clusters (the event ``category``), and inside each cluster
item popularity follows a Zipf law over the item's popularity rank. Each user
is interested in a few clusters. A session views items of one of the user's
clusters, often moving on to the item one rank below the last one viewed,
which gives sequences a next-item signal that a sequential model can learn.
A view may lead to an add_to_cart and then a purchase of the same item, as
later events of the same session.

Sessions of different users run at the same time and take turns on one global
clock, which advances by exponential gaps, so ``ts`` (Unix seconds) never
decreases. The output depends only on the config, seed included.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from streams.events import MAX_TS_S, MIN_TS_S, Event

__all__ = ["SyntheticConfig", "generate", "generate_with_drift"]


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes, rates and seed of a synthetic event stream.

    Probabilities are in [0, 1]. Item ``i`` of ``n_items`` gets the id
    ``f"i{i}"``, user ``u`` the id ``f"u{u}"`` and cluster ``c`` the category
    ``f"c{c}"``. Raises ``ValueError`` naming the field and value when a field
    is out of range.
    """

    n_users: int = 500
    n_items: int = 2000
    # Clusters of items. Cluster sizes differ by at most one item.
    n_clusters: int = 10
    # Interest clusters per user, drawn without replacement.
    clusters_per_user: int = 2
    n_events: int = 20000
    # Exponent s of the within-cluster popularity: rank r has weight (r + 1) ** -s.
    zipf_exponent: float = 1.1
    # Time of the first event, Unix seconds.
    start_ts: float = 1_700_000_000.0
    # Mean gap between consecutive events of the whole stream, in seconds.
    mean_gap_s: float = 30.0
    # Probability that a view is followed by an add_to_cart of the same item.
    add_to_cart_prob: float = 0.15
    # Probability that an add_to_cart is followed by a purchase of the same item.
    purchase_prob: float = 0.3
    # Probability that a view goes to the next-ranked item of the last view's
    # cluster instead of a popularity draw.
    related_item_prob: float = 0.5
    # Probability that a popularity draw comes from a cluster outside the user's interests.
    off_cluster_prob: float = 0.05
    # Mean views per session. Session length is geometric.
    mean_session_views: float = 8.0
    # Sessions in progress at any time. Each event comes from one of them, chosen uniformly.
    n_active_sessions: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int(self, "n_users", minimum=1)
        _check_int(self, "n_clusters", minimum=1)
        _check_int(self, "n_items", minimum=self.n_clusters, reason="every cluster needs an item")
        _check_int(self, "clusters_per_user", minimum=1)
        if self.clusters_per_user > self.n_clusters:
            raise ValueError(
                f"invalid clusters_per_user {self.clusters_per_user!r}: expected at most n_clusters ({self.n_clusters})"
            )
        _check_int(self, "n_events", minimum=0)
        _check_int(self, "n_active_sessions", minimum=1)
        _check_int(self, "seed", minimum=None)
        _check_real(self, "zipf_exponent", minimum=0.0)
        _check_real(self, "mean_gap_s", minimum=0.0, exclusive=True)
        _check_real(self, "mean_session_views", minimum=1.0)
        for name in ("add_to_cart_prob", "purchase_prob", "related_item_prob", "off_cluster_prob"):
            _check_real(self, name, minimum=0.0)
            if getattr(self, name) > 1.0:
                raise ValueError(f"invalid {name} {getattr(self, name)!r}: expected a probability in [0, 1]")
        _check_real(self, "start_ts", minimum=MIN_TS_S)
        if self.start_ts > MAX_TS_S:
            raise ValueError(f"invalid start_ts {self.start_ts!r}: expected Unix seconds at most {MAX_TS_S:.0f}")


def generate(config: SyntheticConfig) -> Iterator[Event]:
    """Yield ``config.n_events`` events in non-decreasing ``ts`` order.

    The same config, seed included, gives the same events on every run.

    >>> config = SyntheticConfig(n_users=3, n_items=12, n_clusters=2, n_events=4, seed=7)
    >>> for event in generate(config):
    ...     print(event.event_id, event.user_id, event.item_id, event.type, event.category)
    syn-7-0 u0 i7 view c0
    syn-7-1 u2 i9 view c1
    syn-7-2 u0 i6 view c1
    syn-7-3 u0 i7 add_to_cart c0
    """
    rng = random.Random(config.seed)
    world = _World.build(config, rng)
    sessions = [world.new_session(rng) for _ in range(config.n_active_sessions)]
    ts = config.start_ts
    for n in range(config.n_events):
        slot = rng.randrange(len(sessions))
        session = sessions[slot]
        item, event_type = session.next_event(world, rng)
        yield Event(
            event_id=f"syn-{config.seed}-{n}",
            user_id=f"u{session.user}",
            item_id=f"i{world.item_ids[item.cluster][item.rank]}",
            type=event_type,
            ts=ts,
            category=f"c{item.cluster}",
        )
        if session.finished:
            sessions[slot] = world.new_session(rng)
        ts += rng.expovariate(1.0 / config.mean_gap_s)


@dataclass(frozen=True)
class _Item:
    cluster: int
    rank: int


@dataclass
class _World:
    """Fixed structure drawn once per seed: item ids per cluster and each user's clusters."""

    config: SyntheticConfig
    # item_ids[c][r] is the numeric id of the item of popularity rank r in cluster c.
    item_ids: list[list[int]]
    user_clusters: list[tuple[int, ...]]
    # Cumulative Zipf weights per cluster size.
    cumulative_weights: dict[int, list[float]]

    @classmethod
    def build(cls, config: SyntheticConfig, rng: random.Random) -> _World:
        # Shuffle ids so that neither id order nor id parity reveals cluster or rank.
        ids = list(range(config.n_items))
        rng.shuffle(ids)
        sizes = [len(range(c, config.n_items, config.n_clusters)) for c in range(config.n_clusters)]
        starts = list(itertools.accumulate(sizes, initial=0))
        item_ids = [ids[starts[c] : starts[c + 1]] for c in range(config.n_clusters)]
        user_clusters = [
            tuple(rng.sample(range(config.n_clusters), config.clusters_per_user)) for _ in range(config.n_users)
        ]
        cumulative_weights = {
            size: list(itertools.accumulate((rank + 1) ** -config.zipf_exponent for rank in range(size)))
            for size in set(sizes)
        }
        return cls(config, item_ids, user_clusters, cumulative_weights)

    def new_session(self, rng: random.Random) -> _Session:
        return _Session(user=rng.randrange(self.config.n_users))

    def popular_item(self, user: int, rng: random.Random) -> _Item:
        """Draw a cluster (usually one of the user's) and an item by Zipf popularity in it."""
        if rng.random() < self.config.off_cluster_prob:
            cluster = rng.randrange(self.config.n_clusters)
        else:
            cluster = rng.choice(self.user_clusters[user])
        weights = self.cumulative_weights[len(self.item_ids[cluster])]
        rank = bisect.bisect_right(weights, rng.random() * weights[-1])
        return _Item(cluster, min(rank, len(weights) - 1))

    def related_item(self, item: _Item) -> _Item:
        """Return the item one popularity rank below, wrapping to the top of the cluster."""
        return _Item(item.cluster, (item.rank + 1) % len(self.item_ids[item.cluster]))


@dataclass
class _Session:
    """One user's visit: views, then the funnel events queued by the last view."""

    user: int
    last_item: _Item | None = None
    pending: list[str] = field(default_factory=list)
    views_done: bool = False

    @property
    def finished(self) -> bool:
        return self.views_done and not self.pending

    def next_event(self, world: _World, rng: random.Random) -> tuple[_Item, str]:
        """Return the next (item, event type): a queued funnel step, else a new view."""
        config = world.config
        if self.pending and self.last_item is not None:
            return self.last_item, self.pending.pop(0)

        if self.last_item is not None and rng.random() < config.related_item_prob:
            item = world.related_item(self.last_item)
        else:
            item = world.popular_item(self.user, rng)
        self.last_item = item

        if rng.random() < config.add_to_cart_prob:
            self.pending.append("add_to_cart")
            if rng.random() < config.purchase_prob:
                self.pending.append("purchase")
        # A session ends after each view with probability 1 / mean_session_views.
        self.views_done = rng.random() < 1.0 / config.mean_session_views
        return item, "view"


def _check_int(config: SyntheticConfig, name: str, minimum: int | None, reason: str = "") -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"invalid {name} {value!r}: expected an integer")
    if minimum is not None and value < minimum:
        because = f" because {reason}" if reason else ""
        raise ValueError(f"invalid {name} {value!r}: expected at least {minimum}{because}")


def _check_real(config: SyntheticConfig, name: str, minimum: float, exclusive: bool = False) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"invalid {name} {value!r}: expected a finite number")
    if value < minimum or (exclusive and value == minimum):
        bound = f"greater than {minimum}" if exclusive else f"at least {minimum}"
        raise ValueError(f"invalid {name} {value!r}: expected {bound}")


def generate_with_drift(config: SyntheticConfig, change_at: int) -> list[Event]:
    """Return ``config.n_events`` events whose world changes at event ``change_at``.

    The first ``change_at`` events come from ``config``; the rest from the same
    config with seed ``config.seed + 1``, starting 30 s after the last event
    before the change. Users and item ids stay the same, but every user's
    interest clusters and every item's cluster and popularity are redrawn:
    a concept drift at a known event. Raises ``ValueError`` unless
    ``0 < change_at < config.n_events``.

    >>> events = generate_with_drift(SyntheticConfig(n_events=100, n_users=10, n_items=50), change_at=60)
    >>> len(events), events[60].event_id
    (100, 'drift-syn-1-0')
    """
    if not 0 < change_at < config.n_events:
        raise ValueError(f"change_at must be in (0, {config.n_events}), got {change_at}")
    before = list(generate(replace(config, n_events=change_at)))
    after_config = replace(config, n_events=config.n_events - change_at, seed=config.seed + 1,
                           start_ts=before[-1].ts + 30.0)
    after = [replace(event, event_id="drift-" + event.event_id) for event in generate(after_config)]
    return before + after

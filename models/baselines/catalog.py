"""The compared models by name, and the shared settings they are built with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from models.baselines.base import BaseModel
from models.baselines.covisitation import CoVisitation
from models.baselines.popular import DEFAULT_HALF_LIFE_S, MostPopular, PopularNow
from models.baselines.ranker import (
    DEFAULT_EPOCHS,
    DEFAULT_FIT_BATCH_SIZE,
    FrozenRanker,
    RetrainedRanker,
    StreamrankRanker,
)
from models.baselines.recent import RecentItems
from models.baselines.river_mf import RiverMF
from models.baselines.sknn import DEFAULT_SESSION_GAP_S, SessionKNN
from models.ranker import RankerConfig
from models.recommender import RecommenderConfig
from models.trainer import TrainerConfig

__all__ = ["MODEL_NAMES", "ComparisonConfig", "build_models", "retrain_interval"]


@dataclass(frozen=True)
class ComparisonConfig:
    """Settings shared by the compared models.

    ``seed`` replaces the seeds of ``ranker`` and ``trainer`` and seeds the
    River model, so one number fixes every random draw of the models.
    ``retrain_every`` counts events after warm-up between two retrainings of
    ``streamrank-retrain``. ``n_epochs`` and ``fit_batch_size`` apply to both
    batch-trained rankers.
    """

    seed: int = 0
    ranker: RankerConfig = field(default_factory=RankerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    serving: RecommenderConfig = field(default_factory=RecommenderConfig)
    popularity_half_life_s: float = DEFAULT_HALF_LIFE_S
    session_gap_s: float = DEFAULT_SESSION_GAP_S
    n_epochs: int = DEFAULT_EPOCHS
    fit_batch_size: int = DEFAULT_FIT_BATCH_SIZE
    retrain_every: int = 20_000

    def seeded_ranker(self) -> RankerConfig:
        return replace(self.ranker, seed=self.seed)

    def seeded_trainer(self) -> TrainerConfig:
        return replace(self.trainer, seed=self.seed)

    def recommender(self) -> RecommenderConfig:
        return replace(self.serving, popularity_half_life_s=self.popularity_half_life_s)


def _streamrank(config: ComparisonConfig) -> BaseModel:
    return StreamrankRanker(config.seeded_ranker(), config.seeded_trainer(), config.recommender())


def _streamrank_no_adapt(config: ComparisonConfig) -> BaseModel:
    model = StreamrankRanker(config.seeded_ranker(), config.seeded_trainer(),
                             replace(config.recommender(), adapt_on_drift=False))
    model.name = "streamrank-no-adapt"
    return model


def _frozen(config: ComparisonConfig) -> BaseModel:
    return FrozenRanker(config.seeded_ranker(), config.seeded_trainer(), config.recommender(),
                        n_epochs=config.n_epochs, fit_batch_size=config.fit_batch_size)


def _retrain(config: ComparisonConfig) -> BaseModel:
    return RetrainedRanker(config.seeded_ranker(), config.seeded_trainer(), config.recommender(),
                           n_epochs=config.n_epochs, fit_batch_size=config.fit_batch_size,
                           retrain_every=config.retrain_every)


_BUILDERS: dict[str, Callable[[ComparisonConfig], BaseModel]] = {
    "popular": lambda config: MostPopular(),
    "popular-now": lambda config: PopularNow(config.popularity_half_life_s),
    "recent": lambda config: RecentItems(),
    "covisit": lambda config: CoVisitation(popularity_half_life_s=config.popularity_half_life_s),
    "sknn": lambda config: SessionKNN(session_gap_s=config.session_gap_s,
                                      popularity_half_life_s=config.popularity_half_life_s),
    "river-mf": lambda config: RiverMF(popularity_half_life_s=config.popularity_half_life_s, seed=config.seed),
    "streamrank": _streamrank,
    "streamrank-no-adapt": _streamrank_no_adapt,
    "streamrank-frozen": _frozen,
    "streamrank-retrain": _retrain,
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def retrain_interval(n_scored: int, fraction: float) -> int:
    """Return ``retrain_every`` for retraining after each ``fraction`` of ``n_scored`` events.

    One event more than the exact share keeps the last retraining off the
    stream's final event, where it would cost a full fit and score nothing.

    >>> retrain_interval(1000, 0.5)
    501
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"invalid retrain fraction {fraction}: expected a value in (0, 1]")
    return int(n_scored * fraction) + 1


def build_models(names: Sequence[str], config: ComparisonConfig | None = None) -> list[BaseModel]:
    """Build a fresh model for each name in :data:`MODEL_NAMES`, in the order given.

    Raises ``ValueError`` for an unknown or repeated name.
    """
    config = config or ComparisonConfig()
    unknown = [name for name in names if name not in _BUILDERS]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}: expected one of {', '.join(MODEL_NAMES)}")
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise ValueError(f"model {repeated[0]!r} is listed more than once; each model runs once per comparison")
    return [_BUILDERS[name](config) for name in names]

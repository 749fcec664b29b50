"""Every model the prequential evaluation compares, the streamrank ranker's adapter included.

``base.py`` defines the contract and ``catalog.py`` builds models by name.
Each other module contains one model family.
"""

from models.baselines.base import BaseModel, CandidateModel, Model, ScoringModel
from models.baselines.catalog import MODEL_NAMES, ComparisonConfig, build_models
from models.baselines.covisitation import CoVisitation
from models.baselines.popular import MostPopular, PopularNow
from models.baselines.ranker import FrozenRanker, RetrainedRanker, StreamrankRanker
from models.baselines.recent import RecentItems
from models.baselines.river_mf import RiverMF
from models.baselines.sknn import SessionKNN

__all__ = [
    "MODEL_NAMES",
    "BaseModel",
    "CandidateModel",
    "CoVisitation",
    "ComparisonConfig",
    "FrozenRanker",
    "Model",
    "MostPopular",
    "PopularNow",
    "RecentItems",
    "RetrainedRanker",
    "RiverMF",
    "ScoringModel",
    "SessionKNN",
    "StreamrankRanker",
    "build_models",
]

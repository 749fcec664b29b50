"""Online matrix factorisation with River's ``reco.BiasedMF``, trained on implicit feedback.

Every event is a positive (``y = 1``). For each one, ``n_negatives`` items
drawn uniformly from the items seen so far, other than the event's item, are
learned as negatives (``y = 0``), so that the model does not rate every item
1. The model is River's biased MF (global mean, user and item biases, latent
dot product) with squared loss and plain SGD.

Scoring every item for every request would cost a pass over the whole
catalogue in Python. So a request scores a candidate set only, the
``n_popular_candidates`` most popular items now plus the
``n_covisit_candidates`` best co-visitation candidates of the user's recent
items (:class:`models.baselines.covisitation.CoVisitation`). An item outside
that set is never recommended, which caps the model's recall.

Shape letters: C candidates, F latent factors.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from river import optim, reco

from models.baselines.base import CandidateModel, top_items
from models.baselines.covisitation import CoVisitation
from models.baselines.popular import DEFAULT_HALF_LIFE_S
from state.vocabulary import EVENT_TYPE_WEIGHTS
from streams.events import Event

__all__ = ["RiverMF"]

DEFAULT_FACTORS = 32
DEFAULT_NEGATIVES = 4
DEFAULT_POPULAR_CANDIDATES = 200
DEFAULT_COVISIT_CANDIDATES = 100


class RiverMF(CandidateModel):
    """Rank popular-now and co-visitation candidates by a biased MF score, learned online.

    A user the model has not learned yet gets popular-now items. Reading
    scores never creates latent vectors: River's ``predict_one`` would, as
    its weights are defaultdicts, so scoring uses ``get`` on them instead.
    """

    name = "river-mf"

    def __init__(
        self,
        n_factors: int = DEFAULT_FACTORS,
        n_negatives: int = DEFAULT_NEGATIVES,
        learning_rate: float = 0.05,
        l2: float = 1e-4,
        n_popular_candidates: int = DEFAULT_POPULAR_CANDIDATES,
        n_covisit_candidates: int = DEFAULT_COVISIT_CANDIDATES,
        popularity_half_life_s: float = DEFAULT_HALF_LIFE_S,
        seed: int = 0,
    ) -> None:
        super().__init__(popularity_half_life_s)
        if n_negatives < 0:
            raise ValueError(f"invalid n_negatives {n_negatives}: expected a count >= 0")
        self.n_factors = n_factors
        self.n_negatives = n_negatives
        self.learning_rate = learning_rate
        self.l2 = l2
        self.n_popular_candidates = n_popular_candidates
        self.n_covisit_candidates = n_covisit_candidates
        self.seed = seed
        self.mf = reco.BiasedMF(
            n_factors=n_factors,
            bias_optimizer=optim.SGD(learning_rate),
            latent_optimizer=optim.SGD(learning_rate),
            l2_bias=l2,
            l2_latent=l2,
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
            seed=seed,
        )
        self.covisitation = CoVisitation(popularity_half_life_s=popularity_half_life_s)
        self._rng = random.Random(seed)
        self._items: list[str] = []
        self._known: set[str] = set()

    def candidate_scores(self, user_id: str) -> Mapping[str, float]:
        if user_id not in self.mf.u_latents:
            return {}
        candidates = dict.fromkeys(item for item, _ in self.popularity.top(self.n_popular_candidates))
        covisit = self.covisitation.candidate_scores(user_id)
        candidates.update(dict.fromkeys(top_items(covisit, self.n_covisit_candidates, frozenset())))
        items = list(candidates)
        return dict(zip(items, self.score(user_id, items)))

    def score(self, user_id: str, items: Sequence[str]) -> list[float]:
        """Return the biased MF score of each item; an item not learned yet gets the user's base score."""
        mf = self.mf
        base = mf.global_mean.get() + mf.u_biases.get(user_id, 0.0)
        scores = np.array([base + mf.i_biases.get(item, 0.0) for item in items], dtype=float)  # (C,)
        user_vector = mf.u_latents.get(user_id)
        if user_vector is None or not items:
            return scores.tolist()
        vectors = [mf.i_latents.get(item) for item in items]
        learned = [index for index, vector in enumerate(vectors) if vector is not None]
        if learned:
            item_matrix = np.stack([vectors[index] for index in learned])  # (C', F)
            scores[learned] += item_matrix @ user_vector
        return scores.tolist()

    def describe(self) -> dict[str, Any]:
        return {
            "n_factors": self.n_factors,
            "n_negatives": self.n_negatives,
            "learning_rate": self.learning_rate,
            "l2": self.l2,
            "n_popular_candidates": self.n_popular_candidates,
            "n_covisit_candidates": self.n_covisit_candidates,
            "popularity_half_life_s": self.popularity.half_life_s,
            "seed": self.seed,
        }

    def _learn(self, event: Event) -> None:
        user, item = event.user_id, event.item_id
        self.mf.learn_one(user, item, 1.0)
        if len(self._items) > 1:
            for _ in range(self.n_negatives):
                negative = self._items[self._rng.randrange(len(self._items))]
                if negative != item:
                    self.mf.learn_one(user, negative, 0.0)
        if item not in self._known:
            self._known.add(item)
            self._items.append(item)
        self.covisitation.learn(event)
        self.popularity.update(item, event.ts, EVENT_TYPE_WEIGHTS[event.type])

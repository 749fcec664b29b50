"""The worker's training loop and checkpoints.

The loop takes a micro-batch of queued examples when ``batch_size`` of them
wait, or ``max_batch_wait_ms`` after the oldest arrived, and runs one
optimizer step on a single worker thread, so a step never blocks the event
loop. The thread returns a copy of the weights, which the event loop installs
as the serving snapshot. Checkpoints (weights, vocabulary, configs, seed) are
written every ``CHECKPOINT_INTERVAL_S`` and when the worker stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from models.ranker import RankerConfig
from models.recommender import Recommender, RecommenderConfig
from models.trainer import LearnResult, TrainerConfig
from models.transitions import Transitions
from state.checkpoints import load_latest, save_checkpoint
from state.sequences import SequenceStore
from state.vocabulary import ItemVocabulary
from streams.config import Settings

__all__ = ["TrainingLoop", "restore_recommender", "CHECKPOINT_INTERVAL_S"]

logger = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 60.0


def restore_recommender(
    settings: Settings,
    store: SequenceStore,
    ranker_config: RankerConfig,
    trainer_config: TrainerConfig,
) -> Recommender:
    """Build the recommender, from the newest valid checkpoint when there is one.

    A checkpoint's ranker config wins over ``ranker_config``, because its
    weights only fit the architecture they were trained with.
    """
    checkpoint = load_latest(settings.checkpoint_dir)
    vocabulary = ItemVocabulary()
    if checkpoint is not None:
        saved = RankerConfig.from_dict(checkpoint.ranker_config)
        if saved != ranker_config:
            logger.warning("checkpoint ranker config differs from the requested one: using the checkpoint's "
                           "encoder=%s dim=%d path=%s", saved.encoder, saved.dim, checkpoint.path)
        ranker_config = saved
        vocabulary = ItemVocabulary(checkpoint.items)
    recommender = Recommender(
        SequenceStore(store.mapping, ranker_config.max_seq_len),
        ranker_config, trainer_config,
        RecommenderConfig(top_k=settings.top_k), vocabulary,
    )
    if checkpoint is not None:
        recommender.restore(checkpoint.model_state, checkpoint.version)
        if checkpoint.extra_state:
            recommender.transitions = Transitions.from_tensors(checkpoint.extra_state)
        logger.info("restored checkpoint version=%d items=%d path=%s",
                    checkpoint.version, len(vocabulary) - 1, checkpoint.path)
    return recommender


class TrainingLoop:
    """Train ``recommender`` on its queued examples, off the event loop.

    ``on_learned`` runs on the event loop after each step, with the step's result.
    """

    def __init__(
        self,
        recommender: Recommender,
        checkpoint_dir: Path,
        on_learned: Callable[[LearnResult], Awaitable[None]],
    ) -> None:
        self.recommender = recommender
        self.checkpoint_dir = checkpoint_dir
        self.on_learned = on_learned
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainer")
        self.model_updated_at = time.time()
        self._last_checkpoint = time.monotonic()

    async def run(self) -> None:
        """Train on micro-batches until cancelled."""
        loop = asyncio.get_running_loop()
        config = self.recommender.trainer_config
        wait_s = config.max_batch_wait_ms / 1000
        oldest_wait_started: float | None = None
        while True:
            pending = len(self.recommender.pending)
            if pending == 0:
                oldest_wait_started = None
                await asyncio.sleep(wait_s / 4)
                continue
            if oldest_wait_started is None:
                oldest_wait_started = time.monotonic()
            full = pending >= config.batch_size
            if not full and time.monotonic() - oldest_wait_started < wait_s:
                await asyncio.sleep(wait_s / 4)
                continue

            batch = self.recommender.take_batch()
            n_items = len(self.recommender.vocabulary)
            result, snapshot = await loop.run_in_executor(self.executor, self.recommender.learn, batch, n_items)
            self.recommender.swap_scorer(result, snapshot)
            self.model_updated_at = time.time()
            oldest_wait_started = None
            await self.on_learned(result)

            if time.monotonic() - self._last_checkpoint >= CHECKPOINT_INTERVAL_S:
                # The counts change on the event loop, so they are copied here, not on the thread.
                extra_state = self.recommender.transitions.to_tensors()
                await loop.run_in_executor(self.executor, self.save_checkpoint, extra_state)

    def save_checkpoint(self, extra_state: dict[str, torch.Tensor] | None = None) -> None:
        """Write a checkpoint of the trainer's model, the vocabulary and the transition counts.

        Blocks while a step runs. ``extra_state`` is the counts as
        :meth:`models.transitions.Transitions.to_tensors` returned them; when
        None they are read here, which is safe only on the event loop's thread.
        """
        recommender = self.recommender
        if extra_state is None:
            extra_state = recommender.transitions.to_tensors()
        with recommender.learn_lock:
            path = save_checkpoint(
                self.checkpoint_dir,
                version=recommender.trainer.version,
                model=recommender.trainer.model,
                ranker_config=recommender.ranker_config.to_dict(),
                trainer_config=recommender.trainer_config.to_dict(),
                items=recommender.vocabulary.items,
                seed=recommender.ranker_config.seed,
                extra_state=extra_state,
            )
        self._last_checkpoint = time.monotonic()
        logger.info("saved checkpoint version=%d path=%s", recommender.trainer.version, path)

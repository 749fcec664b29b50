"""The worker's training loop and its checkpoints, without Kafka."""

from __future__ import annotations

import asyncio

from models.ranker import RankerConfig
from models.trainer import TrainerConfig
from state.sequences import SequenceStore
from streams.config import Settings
from streams.events import Event
from streams.training import TrainingLoop, restore_recommender

RANKER = RankerConfig(dim=16, n_layers=1, n_heads=2, max_seq_len=8, initial_item_capacity=16)
TRAINER = TrainerConfig(batch_size=8, n_negatives=8, max_batch_wait_ms=10)


def _events(n: int) -> list[Event]:
    return [Event(f"e{i}", f"u{i % 3}", f"i{i % 11}", "view", 1_700_000_000.0 + i) for i in range(n)]


def test_loop_trains_queued_examples(tmp_path):
    settings = Settings(data_dir=tmp_path)
    recommender = restore_recommender(settings, SequenceStore({}, 8), RANKER, TRAINER)
    for event in _events(40):
        recommender.observe(event)
    losses = []

    async def on_learned(result):
        losses.append(result.loss)

    loop = TrainingLoop(recommender, settings.checkpoint_dir, on_learned)

    async def train_until_drained():
        task = asyncio.create_task(loop.run())
        deadline = asyncio.get_running_loop().time() + 60
        while recommender.stats.n_trained < recommender.stats.n_examples:
            assert asyncio.get_running_loop().time() < deadline, "training did not drain the queue in 60 s"
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(train_until_drained())
    assert recommender.trainer.version == len(losses) > 0
    assert recommender.scorer_version == recommender.trainer.version
    assert recommender.stats.n_trained == 37  # every event after a user's first


def test_restart_restores_checkpoint(tmp_path):
    settings = Settings(data_dir=tmp_path)
    first = restore_recommender(settings, SequenceStore({}, 8), RANKER, TRAINER)
    for event in _events(40):
        first.observe(event)
    while first.pending:
        first.swap_scorer(*first.learn(first.take_batch(), len(first.vocabulary)))

    async def ignore(result):
        return None

    TrainingLoop(first, settings.checkpoint_dir, ignore).save_checkpoint()
    second = restore_recommender(settings, SequenceStore({}, 8), RankerConfig(), TRAINER)

    assert second.scorer_version == first.trainer.version
    assert second.vocabulary.items == first.vocabulary.items
    assert second.ranker_config == RANKER  # the checkpoint's architecture wins
    sequence = first.store.get("u1")
    assert [i.item_id for i in second.rank([sequence])[0]] == [i.item_id for i in first.rank([sequence])[0]]


def test_fresh_start_without_checkpoint(tmp_path):
    recommender = restore_recommender(Settings(data_dir=tmp_path), SequenceStore({}, 8), RANKER, TRAINER)
    assert recommender.scorer_version == 0
    assert len(recommender.vocabulary) == 1

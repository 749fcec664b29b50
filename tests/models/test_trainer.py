from __future__ import annotations

import math

import pytest
import torch

from models.ranker import RankerConfig, SequentialRanker, pad_sequences
from models.trainer import Example, OnlineTrainer, TrainerConfig

BATCH = [
    Example((1, 2, 3), (1, 1, 2), target=4),
    Example((2, 3), (1, 2), target=5),
    Example((5,), (4,), target=6),
    Example((6, 1), (1, 3), target=2, weight=2.0),
]
N_ITEMS = 8


def make_trainer(encoder: str = "transformer", capacity: int = 8, **overrides) -> OnlineTrainer:
    ranker_config = RankerConfig(
        encoder=encoder, max_seq_len=8, dim=16, n_layers=1, n_heads=2, dropout=0.1,
        initial_item_capacity=capacity, seed=5,
    )
    values = dict(learning_rate=1e-2, n_negatives=8, replay_capacity=16, replay_ratio=0.5, seed=7)
    values.update(overrides)
    return OnlineTrainer(SequentialRanker(ranker_config), TrainerConfig(**values))


# --- TrainerConfig and Example ---


@pytest.mark.parametrize(
    ("field", "value"),
    [("learning_rate", 0.0), ("learning_rate", math.nan), ("weight_decay", -1.0), ("batch_size", 0),
     ("max_batch_wait_ms", -1), ("n_negatives", 0), ("replay_capacity", -1), ("replay_ratio", -0.5),
     ("grad_clip_norm", 0.0), ("seed", -3), ("batch_size", 2.0), ("learning_rate", "fast")],
)
def test_config_rejects_invalid_value(field, value):
    with pytest.raises(ValueError, match=f"TrainerConfig.{field} {value!r}"):
        TrainerConfig(**{field: value})


def test_config_dict_round_trip():
    config = TrainerConfig(learning_rate=0.5, n_negatives=3)
    assert TrainerConfig.from_dict(config.to_dict()) == config


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="'momentum'"):
        TrainerConfig.from_dict({"momentum": 0.9})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(item_seq=(1, 2), type_seq=(1,), target=3), "2 items but 1 event types"),
     (dict(item_seq=(), type_seq=(), target=3), "empty"),
     (dict(item_seq=(1,), type_seq=(1,), target=0), "target 0"),
     (dict(item_seq=(1,), type_seq=(1,), target=2, weight=-1.0), "weight -1.0"),
     (dict(item_seq=(1,), type_seq=(1,), target=2, weight=math.inf), "weight inf")],
)
def test_example_rejects_invalid_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Example(**kwargs)


# --- learn: input checks ---


def test_learn_rejects_empty_examples():
    with pytest.raises(ValueError, match="examples is empty"):
        make_trainer().learn([], N_ITEMS)


@pytest.mark.parametrize("n_items", [0, 1])
def test_learn_rejects_catalogue_without_items(n_items):
    with pytest.raises(ValueError, match=f"n_items is {n_items}; expected at least 2"):
        make_trainer().learn(BATCH, n_items)


def test_learn_rejects_rows_beyond_n_items():
    with pytest.raises(ValueError, match="item row 6, but n_items is 6"):
        make_trainer().learn(BATCH, 6)


def test_learn_rejects_all_zero_weights():
    with pytest.raises(ValueError, match="weight 0"):
        make_trainer().learn([Example((1,), (1,), 2, weight=0.0)], N_ITEMS)


def test_failed_learn_takes_no_step():
    trainer = make_trainer()
    with pytest.raises(ValueError):
        trainer.learn(BATCH, 3)
    assert trainer.version == 0
    assert trainer.reservoir_size == 0


# --- learn: training ---


@pytest.mark.parametrize("encoder", ["transformer", "lstm"])
def test_learn_lowers_loss_on_fixed_batch(encoder):
    trainer = make_trainer(encoder)
    before = trainer.loss_on(BATCH, N_ITEMS)
    for _ in range(30):
        result = trainer.learn(BATCH, N_ITEMS)
    after = trainer.loss_on(BATCH, N_ITEMS)
    assert after < 0.5 * before
    assert math.isfinite(result.loss)
    assert trainer.version == 30


def test_learn_result_counts():
    trainer = make_trainer(replay_ratio=0.5)
    first = trainer.learn(BATCH, N_ITEMS)
    second = trainer.learn(BATCH, N_ITEMS)
    assert first.n_examples == 4
    assert first.n_replayed == 0  # the reservoir is empty before the first step
    assert second.n_replayed == 2
    assert second.elapsed_ms > 0


def test_learn_without_replay():
    trainer = make_trainer(replay_capacity=0)
    trainer.learn(BATCH, N_ITEMS)
    assert trainer.learn(BATCH, N_ITEMS).n_replayed == 0
    assert trainer.reservoir_size == 0


def test_reservoir_bounded_by_capacity():
    trainer = make_trainer(replay_capacity=5)
    for _ in range(4):
        trainer.learn(BATCH, N_ITEMS)
    assert trainer.reservoir_size == 5


def test_replay_ratio_mean_for_single_examples():
    trainer = make_trainer(replay_ratio=0.5, replay_capacity=16)
    trainer.learn(BATCH, N_ITEMS)
    n_replayed = sum(trainer.learn(BATCH[:1], N_ITEMS).n_replayed for _ in range(40))
    assert 10 <= n_replayed <= 30


def test_learn_deterministic_for_same_seeds():
    first, second = make_trainer(), make_trainer()
    losses = [[t.learn(BATCH, N_ITEMS).loss for _ in range(3)] for t in (first, second)]
    assert losses[0] == losses[1]
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_learn_depends_on_trainer_seed():
    first, second = make_trainer(seed=1), make_trainer(seed=2)
    first.learn(BATCH, N_ITEMS)
    second.learn(BATCH, N_ITEMS)
    assert not torch.equal(first.model.item_emb.weight, second.model.item_emb.weight)


def test_learn_leaves_global_rng_alone():
    trainer = make_trainer()
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    trainer.learn(BATCH, N_ITEMS)
    assert torch.equal(torch.rand(3), expected)


def test_accidental_hits_are_masked():
    # With one item, every negative equals the target: after masking, the
    # target is the only candidate and the loss is exactly 0.
    trainer = make_trainer()
    assert trainer.loss_on([Example((1,), (1,), target=1)], n_items=2) == 0.0


def test_zero_weight_example_does_not_count():
    trainer = make_trainer()
    counted = Example((1, 2), (1, 1), target=3)
    first = trainer.loss_on([counted, Example((4,), (1,), target=5, weight=0.0)], N_ITEMS)
    second = trainer.loss_on([counted, Example((6,), (2,), target=7, weight=0.0)], N_ITEMS)
    assert first == second


def test_loss_on_is_repeatable_and_takes_no_step():
    trainer = make_trainer()
    before = trainer.model.item_emb.weight.detach().clone()
    assert trainer.loss_on(BATCH, N_ITEMS) == trainer.loss_on(BATCH, N_ITEMS)
    assert torch.equal(trainer.model.item_emb.weight, before)
    assert trainer.version == 0
    assert trainer.model.training


# --- growth ---


def test_growth_keeps_old_rows():
    trainer = make_trainer(capacity=8)
    trainer.learn(BATCH, N_ITEMS)
    before = trainer.model.item_emb.weight.detach().clone()
    trainer.loss_on(BATCH, n_items=20)
    assert trainer.model.item_capacity == 32
    assert torch.equal(trainer.model.item_emb.weight[:8], before)


def test_training_continues_after_growth():
    trainer = make_trainer(capacity=8)
    for _ in range(3):
        trainer.learn(BATCH, N_ITEMS)
    new_items = [Example((1, 2), (1, 1), target=12), Example((12,), (2,), target=13)]
    batch = BATCH + new_items
    before = trainer.loss_on(batch, 14)
    row_13 = trainer.model.item_emb.weight[13].detach().clone()
    for _ in range(30):
        result = trainer.learn(batch, 14)
    assert math.isfinite(result.loss)
    assert trainer.loss_on(batch, 14) < 0.5 * before
    assert not torch.equal(trainer.model.item_emb.weight[13], row_13)


def test_optimizer_state_padded_on_growth():
    trainer = make_trainer(capacity=8)
    trainer.learn(BATCH, N_ITEMS)
    trainer.learn([Example((1,), (1,), target=9)], 10)
    param = trainer.model.item_emb.weight
    params = [p for group in trainer._optimizer.param_groups for p in group["params"]]
    assert param.shape == (16, 16)
    assert sum(p is param for p in params) == 1
    assert len(params) == len(list(trainer.model.parameters()))
    assert trainer._optimizer.state[param]["exp_avg"].shape == param.shape


def test_optimizer_state_rows_carried_over():
    trainer = make_trainer(capacity=8)
    trainer.learn(BATCH, N_ITEMS)
    old_avg = trainer._optimizer.state[trainer.model.item_emb.weight]["exp_avg"].clone()
    trainer.loss_on(BATCH, 10)  # grows without a step
    state = trainer._optimizer.state[trainer.model.item_emb.weight]
    assert torch.equal(state["exp_avg"][:8], old_avg)
    assert torch.count_nonzero(state["exp_avg"][8:]) == 0


def test_growth_outside_trainer_is_picked_up():
    trainer = make_trainer(capacity=8)
    trainer.learn(BATCH, N_ITEMS)
    trainer.model.grow(30)
    result = trainer.learn([Example((1,), (1,), target=20)], 21)
    assert math.isfinite(result.loss)
    assert trainer._optimizer.state[trainer.model.item_emb.weight]["exp_avg"].shape[0] == 32


# --- snapshot ---


def test_snapshot_is_independent_eval_copy():
    trainer = make_trainer()
    trainer.learn(BATCH, N_ITEMS)
    snapshot = trainer.snapshot()
    frozen = snapshot.item_emb.weight.detach().clone()
    trainer.learn(BATCH, N_ITEMS)
    assert not snapshot.training
    assert trainer.model.training
    assert torch.equal(snapshot.item_emb.weight, frozen)
    assert not torch.equal(trainer.model.item_emb.weight, frozen)
    assert not any(param.requires_grad for param in snapshot.parameters())


# --- adaptation after drift ---


def test_adapt_raises_learning_rate_for_n_steps():
    trainer = make_trainer()
    trainer.adapt(lr_multiplier=3.0, n_steps=2)
    rates = []
    for _ in range(3):
        trainer.learn(BATCH, N_ITEMS)
        rates.append(trainer._optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([3e-2, 3e-2, 1e-2])
    assert not trainer.adapting


def test_adapt_overrides_replay_ratio():
    trainer = make_trainer(replay_ratio=0.5)
    trainer.learn(BATCH, N_ITEMS)
    trainer.adapt(lr_multiplier=1.0, n_steps=1, replay_ratio=0.0)
    assert trainer.learn(BATCH, N_ITEMS).n_replayed == 0
    assert trainer.learn(BATCH, N_ITEMS).n_replayed == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lr_multiplier": 0.0, "n_steps": 1}, "lr_multiplier must be positive, got 0.0"),
    ({"lr_multiplier": 2.0, "n_steps": -1}, "n_steps must be at least 0, got -1"),
    ({"lr_multiplier": 2.0, "n_steps": 1, "replay_ratio": -0.1}, "replay_ratio must be at least 0, got -0.1"),
])
def test_adapt_rejects_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_trainer().adapt(**kwargs)


# --- repeat consumption ---


def _hits_when_the_item_three_back_returns(repeat_bonus: bool, n_steps: int) -> int:
    """Train on random sequences whose next item is the one seen three events earlier; count top-1 hits of 100."""
    ranker_config = RankerConfig(max_seq_len=8, dim=16, n_layers=1, n_heads=2, dropout=0.0,
                                 initial_item_capacity=256, repeat_bonus=repeat_bonus, seed=5)
    trainer = OnlineTrainer(SequentialRanker(ranker_config), TrainerConfig(learning_rate=3e-2, n_negatives=32, seed=7))
    rng = torch.Generator().manual_seed(3)

    def batch(n: int) -> list[Example]:
        seqs = [tuple((torch.randperm(200, generator=rng)[:6] + 1).tolist()) for _ in range(n)]
        return [Example(seq, (1,) * 6, target=seq[-3]) for seq in seqs]

    for _ in range(n_steps):
        trainer.learn(batch(32), n_items=201)
    model = trainer.snapshot()
    hits = 0
    for example in batch(100):
        items, types = pad_sequences([list(example.item_seq)], [list(example.type_seq)], 8)
        hits += int(model.score(items, types)[0, 1:201].argmax()) + 1 == example.target
    return hits


def test_repeat_bonus_learns_which_own_item_comes_back():
    # The sequences are random over 200 items, so embeddings cannot memorise
    # the next item: the recency part of the bonus learns it in a few steps,
    # while attention alone is still far from it.
    with_bonus = _hits_when_the_item_three_back_returns(repeat_bonus=True, n_steps=25)
    without = _hits_when_the_item_three_back_returns(repeat_bonus=False, n_steps=25)
    assert with_bonus >= 90
    assert without < with_bonus - 30


def test_bonus_scalars_train_at_their_own_rate():
    trainer = make_trainer(learning_rate=1e-3, bonus_lr_multiplier=10.0)
    trainer.learn(BATCH, N_ITEMS)
    rates = {id(p): group["lr"] for group in trainer._optimizer.param_groups for p in group["params"]}
    assert rates[id(trainer.model.repeat_gate.bias)] == pytest.approx(1e-2)
    assert rates[id(trainer.model.item_emb.weight)] == pytest.approx(1e-3)

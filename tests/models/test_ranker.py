from __future__ import annotations

import pytest
import torch

from models.ranker import EVENT_TYPE_IDS, RankerConfig, SequentialRanker, pad_sequences, top_k

ENCODERS = ["transformer", "lstm"]


def tiny_config(**overrides) -> RankerConfig:
    values = dict(max_seq_len=20, dim=16, n_layers=2, n_heads=2, dropout=0.1, initial_item_capacity=16, seed=3)
    values.update(overrides)
    return RankerConfig(**values)


def tiny_model(encoder: str = "transformer", **overrides) -> SequentialRanker:
    return SequentialRanker(tiny_config(encoder=encoder, **overrides)).eval()


# --- RankerConfig ---


def test_config_rejects_unknown_encoder():
    with pytest.raises(ValueError, match="'gru'"):
        RankerConfig(encoder="gru")


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_seq_len", 0), ("dim", 0), ("n_layers", 0), ("n_heads", 0), ("dropout", 1.0),
     ("dropout", -0.1), ("initial_item_capacity", 1), ("seed", -1), ("dim", 2.5)],
)
def test_config_rejects_out_of_range(field, value):
    with pytest.raises(ValueError, match=field):
        RankerConfig(**{field: value})


def test_config_rejects_dim_not_divisible_by_heads():
    with pytest.raises(ValueError, match="n_heads 3"):
        RankerConfig(dim=16, n_heads=3)


def test_config_dict_round_trip():
    config = tiny_config(encoder="lstm")
    assert RankerConfig.from_dict(config.to_dict()) == config


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="'hidden_size'"):
        RankerConfig.from_dict({"dim": 8, "hidden_size": 8})


# --- construction and growth ---


@pytest.mark.parametrize("encoder", ENCODERS)
def test_same_seed_same_initial_weights(encoder):
    first = tiny_model(encoder).state_dict()
    second = tiny_model(encoder).state_dict()
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_different_seed_different_weights():
    first = tiny_model(seed=1).item_emb.weight
    second = tiny_model(seed=2).item_emb.weight
    assert not torch.equal(first, second)


def test_construction_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_model()
    assert torch.equal(torch.rand(3), expected)


def test_transformer_blocks_start_different():
    model = tiny_model(n_layers=2)
    first, second = (block.linear1.weight for block in model.blocks)
    assert not torch.equal(first, second)


def test_padding_row_is_zero():
    model = tiny_model()
    assert torch.count_nonzero(model.item_emb.weight[0]) == 0
    assert torch.count_nonzero(model.type_emb.weight[0]) == 0


def test_grow_doubles_and_keeps_rows():
    model = tiny_model()
    before = model.item_emb.weight.detach().clone()
    assert model.grow(40) is True
    assert model.item_capacity == 64
    assert torch.equal(model.item_emb.weight[:16], before)
    assert torch.count_nonzero(model.item_emb.weight[16:]) > 0


def test_grow_within_capacity_is_noop():
    model = tiny_model()
    param = model.item_emb.weight
    assert model.grow(16) is False
    assert model.item_emb.weight is param


def test_grow_new_rows_are_seeded():
    first, second = tiny_model(), tiny_model()
    first.grow(17)
    second.grow(17)
    assert torch.equal(first.item_emb.weight, second.item_emb.weight)


def test_from_state_dict_restores_grown_model():
    model = tiny_model()
    model.grow(100)
    restored = SequentialRanker.from_state_dict(model.config, model.state_dict())
    assert restored.item_capacity == 128
    for name, tensor in model.state_dict().items():
        assert torch.equal(restored.state_dict()[name], tensor), name


# --- encode ---


@pytest.mark.parametrize("encoder", ENCODERS)
def test_encode_ignores_padding_length(encoder):
    model = tiny_model(encoder)
    seqs, types = [[3, 4, 5], [7], [1, 2, 3, 4]], [[1, 2, 3], [4], [5, 1, 1, 2]]
    short = model.encode(*pad_sequences(seqs, types, 5))  # (B, 5, D)
    long = model.encode(*pad_sequences(seqs, types, 20))  # (B, 20, D)
    for b, seq in enumerate(seqs):
        n = len(seq)
        assert torch.allclose(short[b, -n:], long[b, -n:], atol=1e-5), b
    assert not torch.isnan(long).any()
    assert not torch.isnan(short).any()


@pytest.mark.parametrize("encoder", ENCODERS)
def test_encode_zero_at_padding(encoder):
    model = tiny_model(encoder)
    hidden = model.encode(*pad_sequences([[3, 4], []], [[1, 2], []], 6))  # (2, 6, D)
    assert torch.count_nonzero(hidden[0, :4]) == 0
    assert torch.count_nonzero(hidden[1]) == 0
    assert torch.count_nonzero(hidden[0, 4:]) > 0


@pytest.mark.parametrize("encoder", ENCODERS)
def test_encode_no_nan_when_training(encoder):
    model = tiny_model(encoder).train()
    hidden = model.encode(*pad_sequences([[3, 4], []], [[1, 2], []], 6))
    assert not torch.isnan(hidden).any()


@pytest.mark.parametrize("encoder", ENCODERS)
def test_encode_is_causal(encoder):
    model = tiny_model(encoder)
    items = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    types = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 4]])
    changed_items, changed_types = items.clone(), types.clone()
    changed_items[0, 5:] = torch.tensor([11, 12, 13])
    changed_types[0, 5:] = torch.tensor([5, 5, 5])
    hidden = model.encode(items, types)
    changed = model.encode(changed_items, changed_types)
    assert torch.allclose(hidden[0, :5], changed[0, :5], atol=1e-6)
    assert not torch.allclose(hidden[0, 5:], changed[0, 5:], atol=1e-3)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_hidden_matches_prefix_last_hidden(encoder):
    model = tiny_model(encoder)
    seq, types = [3, 4, 5, 6], [1, 2, 3, 4]
    full = model.encode(*pad_sequences([seq], [types], 8))[0]  # (8, D)
    for n in range(1, len(seq) + 1):
        prefix = model.last_hidden(*pad_sequences([seq[:n]], [types[:n]], 8))[0]  # (D,)
        assert torch.allclose(full[8 - len(seq) + n - 1], prefix, atol=1e-5), n


def test_event_type_changes_hidden():
    model = tiny_model()
    view = model.last_hidden(*pad_sequences([[3, 4]], [[1, 1]], 4))
    purchase = model.last_hidden(*pad_sequences([[3, 4]], [[1, 4]], 4))
    assert not torch.allclose(view, purchase)


def test_encode_rejects_right_padding():
    model = tiny_model()
    with pytest.raises(ValueError, match="left"):
        model.encode(torch.tensor([[3, 4, 0]]), torch.tensor([[1, 1, 0]]))


def test_encode_rejects_too_long_sequence():
    model = tiny_model(max_seq_len=4)
    with pytest.raises(ValueError, match="max_seq_len 4"):
        model.encode(torch.ones(1, 5, dtype=torch.long), torch.ones(1, 5, dtype=torch.long))


def test_encode_rejects_row_beyond_capacity():
    model = tiny_model()
    with pytest.raises(ValueError, match="item row 16"):
        model.encode(torch.tensor([[3, 16]]), torch.tensor([[1, 1]]))


def test_encode_rejects_padding_mismatch():
    model = tiny_model()
    with pytest.raises(ValueError, match="disagree on padding"):
        model.encode(torch.tensor([[3, 4]]), torch.tensor([[0, 1]]))


# --- logits ---


def test_logits_candidates_match_full_rows():
    model = tiny_model()
    hidden = model.last_hidden(*pad_sequences([[3, 4], [5]], [[1, 2], [3]], 4))  # (2, D)
    candidates = torch.tensor([[1, 5, 9], [2, 2, 15]])  # (2, 3)
    full = model.logits(hidden)  # (2, N)
    picked = model.logits(hidden, candidates)  # (2, 3)
    assert full.shape == (2, 16)
    assert picked.shape == (2, 3)
    assert torch.allclose(picked, full.gather(1, candidates), atol=1e-5)


def test_logits_rejects_bad_candidate_shape():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        model.logits(torch.zeros(2, 16), torch.tensor([1, 2]))


# --- pad_sequences ---


def test_pad_sequences_left_pads_and_truncates():
    items, types = pad_sequences([[1, 2, 3, 4], [9], []], [[1, 1, 2, 3], [5], []], 3)
    assert items.tolist() == [[2, 3, 4], [0, 0, 9], [0, 0, 0]]
    assert types.tolist() == [[1, 2, 3], [0, 0, 5], [0, 0, 0]]
    assert items.dtype == torch.long


@pytest.mark.parametrize(
    ("seqs", "types", "message"),
    [([[1, 2]], [[1]], "2 items but 1 event types"),
     ([[1]], [], "1 item sequences but 0"),
     ([[0, 2]], [[1, 1]], "item row 0"),
     ([[1]], [[6]], "event type")],
)
def test_pad_sequences_rejects_bad_input(seqs, types, message):
    with pytest.raises(ValueError, match=message):
        pad_sequences(seqs, types, 4)


def test_event_type_ids_reserve_zero():
    assert 0 not in EVENT_TYPE_IDS.values()
    assert sorted(EVENT_TYPE_IDS.values()) == [1, 2, 3, 4, 5]


# --- top_k ---


def test_top_k_ranked_rows_within_catalogue():
    model = tiny_model()
    result = top_k(model, [3, 4], [1, 2], k=5, n_items=10)
    rows = [row for row, _ in result]
    scores = [score for _, score in result]
    assert len(result) == 5
    assert all(1 <= row < 10 for row in rows)
    assert scores == sorted(scores, reverse=True)
    assert len(set(rows)) == len(rows)


def test_top_k_scores_match_logits():
    model = tiny_model()
    with torch.no_grad():
        hidden = model.last_hidden(*pad_sequences([[3, 4]], [[1, 2]], model.config.max_seq_len))
        logits = model.logits(hidden)[0]
    for row, score in top_k(model, [3, 4], [1, 2], k=3, n_items=10):
        assert score == pytest.approx(float(logits[row]), abs=1e-5)


def test_top_k_drops_excluded_rows():
    model = tiny_model()
    full = [row for row, _ in top_k(model, [3], [1], k=9, n_items=10)]
    result = [row for row, _ in top_k(model, [3], [1], k=9, n_items=10, exclude={full[0], 2, 0, 99})]
    assert full[0] not in result
    assert 2 not in result
    assert len(result) == 7


def test_top_k_small_catalogue_returns_fewer():
    model = tiny_model()
    assert len(top_k(model, [1], [1], k=10, n_items=3)) == 2
    assert top_k(model, [1], [1], k=10, n_items=1) == []
    assert top_k(model, [1], [1], k=0, n_items=10) == []


def test_top_k_skips_rows_beyond_capacity():
    model = tiny_model()
    rows = [row for row, _ in top_k(model, [3], [1], k=100, n_items=50)]
    assert len(rows) == 15
    assert max(rows) < model.item_capacity


def test_top_k_drops_unknown_input_rows():
    model = tiny_model()
    with_unknown = top_k(model, [3, 40, 4], [1, 2, 2], k=4, n_items=16)
    without = top_k(model, [3, 4], [1, 2], k=4, n_items=16)
    assert with_unknown == without


def test_top_k_empty_sequence_scores_zero():
    model = tiny_model()
    result = top_k(model, [], [], k=3, n_items=10)
    assert len(result) == 3
    assert all(score == 0.0 for _, score in result)


@pytest.mark.parametrize("training", [True, False])
def test_top_k_restores_training_mode(training):
    model = tiny_model().train(training)
    top_k(model, [3, 4], [1, 2], k=3, n_items=10)
    assert model.training is training


def test_top_k_deterministic_in_train_mode():
    model = tiny_model(dropout=0.5).train()
    first = top_k(model, [3, 4], [1, 2], k=3, n_items=10)
    second = top_k(model, [3, 4], [1, 2], k=3, n_items=10)
    assert first == second


# --- repeat bonus ---


def trained_bonus_model(**overrides) -> SequentialRanker:
    """A model whose repeat parameters are set away from their zero start, so the bonus is visible."""
    model = tiny_model(**overrides)
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith("repeat_"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model


def test_repeat_bonus_starts_at_zero():
    model = tiny_model()
    items, types = pad_sequences([[3, 4, 3]], [[1, 2, 4]], 6)
    hidden = model.last_hidden(items, types)
    assert torch.equal(model.score(items, types), model.logits(hidden))


def test_repeat_bonus_only_on_items_in_the_sequence():
    model = trained_bonus_model()
    items, types = pad_sequences([[3, 4, 3], [5]], [[1, 2, 4], [1]], 6)
    hidden = model.last_hidden(items, types)
    bonus = model.history_bonus(items, types, hidden)  # (2, N)
    assert bonus[0].nonzero().flatten().tolist() == [3, 4]
    assert bonus[1].nonzero().flatten().tolist() == [5]


def test_repeat_bonus_candidates_match_dense():
    model = trained_bonus_model()
    seqs, types = [[3, 4, 3, 7], [5, 6]], [[1, 2, 4, 1], [1, 3]]
    short = pad_sequences(seqs, types, 4)
    long = pad_sequences(seqs, types, 12)
    candidates = torch.tensor([[3, 4, 7, 9], [5, 6, 1, 2]])
    full = model.score(*short)
    picked = model.score(*short, candidates)
    assert torch.allclose(picked, full.gather(1, candidates), atol=1e-5)
    assert torch.allclose(model.score(*long, candidates), picked, atol=1e-5)


def test_repeat_bonus_uses_the_last_occurrence():
    # Item 3 was seen long ago and again most recently: its bonus is that of
    # the most recent position, counted twice, with the last event type.
    model = trained_bonus_model()
    items, types = pad_sequences([[3, 4, 3]], [[1, 2, 4]], 3)
    hidden = model.last_hidden(items, types)
    bonus = model.history_bonus(items, types, hidden)[0]
    gate = model.repeat_gate(hidden)[0, 0]
    expected_3 = model.repeat_recency.weight[0, 0] + model.repeat_type.weight[4, 0] + model.repeat_count.weight[2, 0]
    expected_4 = model.repeat_recency.weight[1, 0] + model.repeat_type.weight[2, 0] + model.repeat_count.weight[1, 0]
    assert torch.isclose(bonus[3], expected_3 + gate)
    assert torch.isclose(bonus[4], expected_4 + gate)


def test_no_repeat_bonus_scores_by_logits_only():
    model = tiny_model(repeat_bonus=False)
    items, types = pad_sequences([[3, 4, 3]], [[1, 2, 4]], 6)
    assert torch.equal(model.score(items, types), model.logits(model.last_hidden(items, types)))
    with pytest.raises(ValueError, match="repeat_bonus"):
        model.history_bonus(items, types, model.last_hidden(items, types))


def test_config_rejects_non_boolean_repeat_bonus():
    with pytest.raises(ValueError, match="repeat_bonus"):
        RankerConfig(repeat_bonus="yes")


def test_from_state_dict_loads_pre_bonus_checkpoint():
    old = tiny_model(repeat_bonus=False)
    restored = SequentialRanker.from_state_dict(tiny_config(), old.state_dict()).eval()
    items, types = pad_sequences([[3, 4, 3]], [[1, 2, 4]], 6)
    assert torch.allclose(restored.score(items, types), old.score(items, types))


def test_from_state_dict_rejects_foreign_keys():
    state = dict(tiny_model().state_dict(), extra=torch.zeros(1))
    with pytest.raises(ValueError, match="extra"):
        SequentialRanker.from_state_dict(tiny_config(), state)

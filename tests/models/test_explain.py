"""Tests of the recommendation reasons: occlusion attribution and the fallbacks."""

from __future__ import annotations

import doctest

import pytest
import torch

import models.explain
from models.explain import (
    POPULAR_NOW,
    REASON_KINDS,
    CoVisitation,
    Reason,
    bought_after_reason,
    explain,
    explain_batch,
    popular_reasons,
    sequence_contributions,
)
from models.ranker import EVENT_TYPE_IDS, RankerConfig, SequentialRanker, pad_sequences
from models.trainer import Example, OnlineTrainer, TrainerConfig
from state.vocabulary import ItemVocabulary

ENCODERS = ["transformer", "lstm"]
# After "a" comes "b" and after "c" comes "d". "x", "y", "e" and "f" are noise before them.
ITEMS = ["a", "b", "c", "d", "x", "y", "e", "f"]
VIEW = EVENT_TYPE_IDS["view"]


def _config(encoder: str) -> RankerConfig:
    return RankerConfig(
        encoder=encoder, max_seq_len=8, dim=16, n_layers=1, n_heads=2, dropout=0.0, initial_item_capacity=16, seed=5
    )


@pytest.fixture(scope="module", params=ENCODERS)
def trained(request) -> tuple[SequentialRanker, ItemVocabulary]:
    """A tiny ranker trained until "a" predicts "b" and "c" predicts "d", whatever came before."""
    vocabulary = ItemVocabulary(ITEMS)
    rows = {item: vocabulary.row(item) for item in ITEMS}
    examples = [
        Example(item_seq=(rows[noise], rows[cue]), type_seq=(VIEW, VIEW), target=rows[target])
        for noise in ("x", "y", "e", "f")
        for cue, target in (("a", "b"), ("c", "d"))
    ]
    trainer = OnlineTrainer(
        SequentialRanker(_config(request.param)),
        TrainerConfig(learning_rate=0.01, n_negatives=8, replay_capacity=0, seed=5),
    )
    # 40 steps already separate the cues in both encoders; 60 leave a margin.
    for _ in range(60):
        trainer.learn(examples, len(vocabulary))
    return trainer.snapshot(), vocabulary


def _untrained(encoder: str = "transformer") -> tuple[SequentialRanker, ItemVocabulary]:
    return SequentialRanker(_config(encoder)).eval(), ItemVocabulary(ITEMS)


def test_explain_doctests_pass():
    failures, attempted = doctest.testmod(models.explain)

    assert attempted > 0
    assert failures == 0


# --- occlusion reasons ---


def test_reason_cites_item_that_predicts_recommendation(trained):
    model, vocabulary = trained

    reasons = explain(model, vocabulary, ["x", "a"], ["view", "view"], ["b"])

    assert reasons[0] is not None
    assert reasons[0].kind == "sequence"
    assert reasons[0].items[0] == "a"
    assert reasons[0].text.startswith("because you viewed a")


def test_reasons_follow_sequence_change(trained):
    model, vocabulary = trained

    after_a = explain(model, vocabulary, ["x", "a"], ["view", "view"], ["b", "d"])
    after_c = explain(model, vocabulary, ["x", "c"], ["view", "view"], ["b", "d"])

    assert after_a[0].items[0] == "a"
    assert after_c[1].items[0] == "c"
    assert after_a != after_c


def test_contribution_of_cue_is_largest(trained):
    model, vocabulary = trained

    contributions = sequence_contributions(model, vocabulary, ["x", "a"], ["view", "view"], ["b"])

    assert [item for item, _ in contributions["b"]][0] == "a"
    assert contributions["b"][0][1] > 0.0


def test_reason_verb_follows_last_event_type(trained):
    model, vocabulary = trained

    reasons = explain(model, vocabulary, ["a", "x", "a"], ["view", "view", "add_to_cart"], ["b"], max_reasons=1)

    assert reasons[0] == Reason("sequence", "because you added a to your cart", ("a",))


@pytest.mark.parametrize("encoder", ENCODERS)
def test_reasons_cite_only_sequence_items(encoder):
    model, vocabulary = _untrained(encoder)
    sequence = ["e", "a", "x", "a", "f"]

    reasons = explain(model, vocabulary, sequence, ["view"] * 5, ITEMS, max_reasons=3)

    assert len(reasons) == len(ITEMS)
    assert any(reason is not None for reason in reasons)
    for reason in reasons:
        if reason is not None:
            assert set(reason.items) <= set(sequence)
            assert 1 <= len(reason.items) <= 3


def test_max_reasons_bounds_cited_items():
    model, vocabulary = _untrained()

    reasons = explain(model, vocabulary, ["e", "a", "x", "c", "f"], ["view"] * 5, ITEMS, max_reasons=1)

    assert any(reason is not None for reason in reasons)
    assert all(len(reason.items) == 1 for reason in reasons if reason is not None)


def test_only_recent_items_are_occluded():
    model, vocabulary = _untrained()

    contributions = sequence_contributions(
        model, vocabulary, ["e", "a", "x", "c", "a", "f"], ["view"] * 6, ["b"], max_occluded_items=2
    )

    assert {item for item, _ in contributions["b"]} == {"a", "f"}


def test_explain_deterministic_and_restores_train_mode():
    model, vocabulary = _untrained()
    model.train()
    sequence, types = ["e", "a", "x"], ["view", "click", "purchase"]

    first = explain(model, vocabulary, sequence, types, ITEMS)
    second = explain(model, vocabulary, sequence, types, ITEMS)

    assert first == second
    assert model.training


def test_explain_leaves_vocabulary_unchanged():
    model, vocabulary = _untrained()

    explain(model, vocabulary, ["a", "never-seen"], ["view", "view"], ["b", "also-never-seen"])

    assert len(vocabulary) == len(ITEMS) + 1
    assert "never-seen" not in vocabulary


def test_single_item_contribution_is_full_logit():
    model, vocabulary = _untrained()

    contributions = sequence_contributions(model, vocabulary, ["a"], ["view"], ["b"])

    with torch.no_grad():
        hidden = model.last_hidden(torch.tensor([[vocabulary.row("a")]]), torch.tensor([[VIEW]]))  # (1, D)
        full_logit = model.logits(hidden, torch.tensor([[vocabulary.row("b")]]))  # (1, 1)
    # Without "a" the sequence is all padding, whose hidden state is zero, so the logit is 0.
    assert contributions["b"] == [("a", pytest.approx(float(full_logit), abs=1e-5))]


# --- items unknown to the model ---


def test_unknown_sequence_items_are_ignored():
    model, vocabulary = _untrained()

    with_unknown = explain(model, vocabulary, ["a", "never-seen", "c"], ["view"] * 3, ["b", "d"])
    without = explain(model, vocabulary, ["a", "c"], ["view"] * 2, ["b", "d"])

    assert with_unknown == without


def test_items_newer_than_snapshot_are_ignored():
    # The vocabulary grew past the snapshot's 16 embedding rows.
    model, vocabulary = _untrained()
    for n in range(20):
        vocabulary.add(f"new{n}")
    assert vocabulary.row("new19") >= model.item_capacity

    contributions = sequence_contributions(model, vocabulary, ["a", "new19"], ["view", "view"], ["new19", "b"])
    reasons = explain(model, vocabulary, ["a", "new19"], ["view", "view"], ["new19"])

    assert list(contributions) == ["b"]
    assert [item for item, _ in contributions["b"]] == ["a"]
    assert reasons == [None]


def test_unknown_recommended_item_gets_fallback():
    model, vocabulary = _untrained()
    covisitation = CoVisitation()
    for _ in range(2):
        covisitation.update("a", "brand-new")

    reasons = explain(model, vocabulary, ["a"], ["view"], ["brand-new", "other-new"], covisitation=covisitation,
                      popular_items={"other-new"})

    assert reasons[0] == Reason("bought_after", "often bought after a", ("a",))
    assert reasons[1] == POPULAR_NOW


def test_empty_sequence_gets_only_fallbacks():
    model, vocabulary = _untrained()

    reasons = explain(model, vocabulary, [], [], ["b", "d"], popular_items={"b"})

    assert reasons == [POPULAR_NOW, None]


def test_no_reason_when_nothing_supports_item():
    model, vocabulary = _untrained()

    assert explain(model, vocabulary, ["never-seen"], ["view"], ["b"]) == [None]


@pytest.mark.parametrize(
    ("items", "types", "limits", "match"),
    [
        (["a"], [], {}, "one event type per item"),
        (["a"], ["scroll"], {}, "'scroll'"),
        (["a"], ["view"], {"max_reasons": 0}, "max_reasons 0"),
        (["a"], ["view"], {"max_occluded_items": 0}, "max_occluded_items 0"),
    ],
)
def test_explain_rejects_invalid_input(items, types, limits, match):
    model, vocabulary = _untrained()

    with pytest.raises(ValueError, match=match):
        explain(model, vocabulary, items, types, ["b"], **limits)


# --- batches of users ---

# (sequence items, event types, recommended items) per user: different lengths,
# one longer than max_seq_len 8, unknown items on both sides, a single item,
# an empty sequence and an empty recommended list.
BATCH_USERS = [
    (["x", "a"], ["view", "view"], ["b", "d", "brand-new"]),
    (["a", "x", "a"], ["view", "click", "add_to_cart"], ["b", "c"]),
    (["e", "a", "never-seen", "c", "f"], ["view"] * 5, ["b", "d", "x", "other-new"]),
    (["c"], ["purchase"], ["d", "b"]),
    ([], [], ["b", "d"]),
    (["never-seen"], ["view"], ["b"]),
    (["e", "a", "x", "c", "a", "f", "y", "b", "d", "x"], ["view", "click"] * 5, ITEMS),
    (["a", "c"], ["view", "view"], []),
]


def _batch_fallbacks() -> dict:
    covisitation = CoVisitation()
    for _ in range(2):
        covisitation.update("a", "brand-new")
        covisitation.update("c", "d")
    return {"covisitation": covisitation, "popular_items": {"other-new", "b"}}


def _padded_contributions(model, vocabulary, items, types, recommended, max_occluded_items):
    """Compute contributions the direct way: one user, every row padded to max_seq_len."""
    max_len = model.config.max_seq_len
    known = [(item, vocabulary.row(item), EVENT_TYPE_IDS[t]) for item, t in zip(items[-max_len:], types[-max_len:])
             if item in vocabulary and vocabulary.row(item) < model.item_capacity]
    if not known or not recommended:
        return {}
    distinct = list(dict.fromkeys(item for item, _, _ in reversed(known)))[:max_occluded_items]
    variants = [known] + [[entry for entry in known if entry[0] != removed] for removed in distinct]
    item_seqs, type_seqs = pad_sequences(
        [[row for _, row, _ in v] for v in variants], [[t for _, _, t in v] for v in variants], max_len
    )  # (U+1, L)
    candidates = torch.tensor([[vocabulary.row(item) for item in recommended]] * len(variants))  # (U+1, K)
    with torch.no_grad():
        scores = model.score(item_seqs, type_seqs, candidates)  # (U+1, K)
    drops = scores[:1] - scores[1:]  # (U, K)
    return {item: dict(zip(distinct, drops[:, k].tolist())) for k, item in enumerate(recommended)}


def test_batch_reasons_equal_per_user_reasons(trained):
    model, vocabulary = trained
    fallbacks = _batch_fallbacks()

    batched = explain_batch(
        model,
        vocabulary,
        [(items, types) for items, types, _ in BATCH_USERS],
        [recommended for _, _, recommended in BATCH_USERS],
        max_reasons=3,
        max_occluded_items=4,
        **fallbacks,
    )

    assert len(batched) == len(BATCH_USERS)
    for b, (items, types, recommended) in enumerate(BATCH_USERS):
        alone = explain(model, vocabulary, items, types, recommended, max_reasons=3, max_occluded_items=4, **fallbacks)
        assert batched[b] == alone, f"user {b}"


def test_batch_reasons_include_every_kind(trained):
    model, vocabulary = trained
    fallbacks = _batch_fallbacks()

    batched = explain_batch(
        model,
        vocabulary,
        [(items, types) for items, types, _ in BATCH_USERS],
        [recommended for _, _, recommended in BATCH_USERS],
        **fallbacks,
    )

    kinds = {reason.kind for reasons in batched for reason in reasons if reason is not None}
    assert kinds == set(REASON_KINDS)
    assert batched[0][2] == Reason("bought_after", "often bought after a", ("a",))
    assert batched[4] == [POPULAR_NOW, None]
    assert batched[5] == [POPULAR_NOW]
    assert batched[7] == []


@pytest.mark.parametrize("rows_per_pass", [1, 3, 64])
def test_batch_contributions_equal_padded_pass(trained, monkeypatch, rows_per_pass):
    # Rows are encoded in passes of similar length, each padded only to its longest row.
    model, vocabulary = trained
    monkeypatch.setattr(models.explain, "ROWS_PER_PASS", rows_per_pass)
    users = [(items, types, [item for item in recommended if item in vocabulary])
             for items, types, recommended in BATCH_USERS]

    batched = models.explain._batch_contributions(
        model, vocabulary, [(items, types) for items, types, _ in users], [rec for _, _, rec in users], 4
    )

    for b, (items, types, recommended) in enumerate(users):
        expected = _padded_contributions(model, vocabulary, items, types, recommended, 4)
        got = {item: dict(pairs) for item, pairs in batched[b].items()}
        assert got.keys() == expected.keys(), f"user {b}"
        for item, values in expected.items():
            assert got[item] == pytest.approx(values, abs=1e-5), f"user {b}, item {item}"


def test_batch_ignores_items_newer_than_snapshot():
    model, vocabulary = _untrained()
    for n in range(20):
        vocabulary.add(f"new{n}")
    assert vocabulary.row("new7") == model.item_capacity  # new7 .. new19 have no embedding
    users = [
        (["a", "new19"], ["view", "view"], ["new19", "b"]),
        (["new19"], ["view"], ["b"]),
        (["c", "new12", "a"], ["view", "click", "view"], ["d", "new12"]),
    ]

    batched = explain_batch(model, vocabulary, [(items, types) for items, types, _ in users],
                            [recommended for _, _, recommended in users], popular_items={"new19"})

    assert batched[0][0] == POPULAR_NOW
    assert batched[1] == [None]
    for b, (items, types, recommended) in enumerate(users):
        assert batched[b] == explain(model, vocabulary, items, types, recommended, popular_items={"new19"}), b
        for reason in batched[b]:
            assert reason is None or not any(item.startswith("new") for item in reason.items), b


def test_batch_restores_train_mode():
    model, vocabulary = _untrained()
    model.train()

    explain_batch(model, vocabulary, [(["a", "x"], ["view", "view"]), (["c"], ["view"])], [["b"], ["d"]])

    assert model.training


def test_batch_of_no_users_is_empty():
    model, vocabulary = _untrained()

    assert explain_batch(model, vocabulary, [], []) == []


@pytest.mark.parametrize(
    ("sequences", "recommended", "match"),
    [
        ([(["a"], ["view"])], [], "1 sequences but 0 recommended lists"),
        ([(["a"], ["view"]), (["a", "c"], ["view"])], [["b"], ["b"]], "sequence 1 has 2 items but 1 event types"),
    ],
)
def test_batch_rejects_invalid_input(sequences, recommended, match):
    model, vocabulary = _untrained()

    with pytest.raises(ValueError, match=match):
        explain_batch(model, vocabulary, sequences, recommended)


# --- fallbacks ---


def test_popular_reasons_one_per_item():
    reasons = popular_reasons(["a", "b"])

    assert reasons == [POPULAR_NOW, POPULAR_NOW]
    assert reasons[0].to_dict() == {"kind": "popular_now", "text": "popular now", "items": []}


def test_bought_after_prefers_most_recent_item():
    covisitation = CoVisitation()
    for earlier in ("a", "a", "c", "c", "c"):
        covisitation.update(earlier, "z")

    reason = bought_after_reason(covisitation, ["c", "a", "x"], "z")

    assert reason == Reason("bought_after", "often bought after a", ("a",))


def test_bought_after_needs_two_counts():
    covisitation = CoVisitation()
    covisitation.update("a", "z")

    assert bought_after_reason(covisitation, ["a"], "z") is None


def test_covisitation_ignores_self_pairs():
    covisitation = CoVisitation()
    covisitation.update("a", "a")

    assert covisitation.count("a", "a") == 0
    assert len(covisitation) == 0


def test_covisitation_prunes_rare_followers():
    covisitation = CoVisitation(max_followers=2)
    for item in ("b", "b", "b", "c", "c", "d", "e", "f"):
        covisitation.update("a", item)

    assert covisitation.top_after("a", 10) == [("b", 3), ("c", 2)]
    assert covisitation.count("a", "f") == 0


def test_covisitation_top_after_breaks_ties_by_id():
    covisitation = CoVisitation()
    for item in ("z", "m", "b"):
        covisitation.update("a", item)

    assert covisitation.top_after("a", 2) == [("b", 1), ("m", 1)]
    assert covisitation.top_after("unknown", 2) == []


def test_reason_rejects_unknown_kind():
    with pytest.raises(ValueError, match="'trending'"):
        Reason("trending", "trending now")


def test_own_item_without_contribution_cites_itself():
    # No occluded item raised "a", but the repeat bonus can: the item is its own reason.
    reasons = models.explain._user_reasons(
        ["a", "b"], ["add_to_cart", "view"], ["a", "c"], {}, max_reasons=2, covisitation=None, popular=set(),
        repeatable={"a", "b"},
    )
    assert reasons == [Reason("sequence", "because you added a to your cart", ("a",)), None]

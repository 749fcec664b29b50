"""Tests of the recommendation reasons: occlusion attribution and the fallbacks."""

from __future__ import annotations

import doctest

import pytest
import torch

import models.explain
from models.explain import (
    POPULAR_NOW,
    CoVisitation,
    Reason,
    bought_after_reason,
    explain,
    popular_reasons,
    sequence_contributions,
)
from models.ranker import EVENT_TYPE_IDS, RankerConfig, SequentialRanker
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

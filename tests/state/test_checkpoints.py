from __future__ import annotations

import hashlib
import json
import logging

import pytest
import torch

from models.ranker import RankerConfig, SequentialRanker
from models.trainer import TrainerConfig
from state.checkpoints import CheckpointError, load_checkpoint, load_latest, save_checkpoint

RANKER_CONFIG = RankerConfig(max_seq_len=8, dim=8, n_layers=1, n_heads=2, initial_item_capacity=8, seed=4)
TRAINER_CONFIG = TrainerConfig(n_negatives=4, seed=9)


def save(directory, version, model=None, items=None, keep_last=3):
    model = model or SequentialRanker(RANKER_CONFIG)
    return save_checkpoint(
        directory,
        version=version,
        model=model,
        ranker_config=RANKER_CONFIG.to_dict(),
        trainer_config=TRAINER_CONFIG.to_dict(),
        items=items or ["", "a", "b"],
        seed=9,
        keep_last=keep_last,
    )


def rewrite_sha(weights_path):
    metadata_path = weights_path.with_suffix(".json")
    metadata = json.loads(metadata_path.read_text())
    metadata["weights_sha256"] = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    metadata_path.write_text(json.dumps(metadata))


def test_round_trip_restores_grown_model(tmp_path):
    model = SequentialRanker(RANKER_CONFIG)
    model.grow(20)
    items = [""] + [f"item-{i}" for i in range(1, 20)]
    path = save(tmp_path, 7, model=model, items=items)

    checkpoint = load_latest(tmp_path)
    restored = SequentialRanker.from_state_dict(
        RankerConfig.from_dict(checkpoint.ranker_config), checkpoint.model_state
    )

    assert path == tmp_path / "model-v00000007.pt"
    assert checkpoint.path == path
    assert checkpoint.version == 7
    assert checkpoint.items == items
    assert checkpoint.seed == 9
    assert TrainerConfig.from_dict(checkpoint.trainer_config) == TRAINER_CONFIG
    assert restored.item_capacity == 32
    for name, tensor in model.state_dict().items():
        assert torch.equal(restored.state_dict()[name], tensor), name


def test_save_writes_metadata_beside_weights(tmp_path):
    path = save(tmp_path, 1)
    metadata = json.loads(path.with_suffix(".json").read_text())
    assert metadata["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert metadata["items"] == ["", "a", "b"]
    assert metadata["created_at"] > 0


def test_save_leaves_no_temporary_files(tmp_path):
    save(tmp_path, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-v00000001.json", "model-v00000001.pt"]


def test_save_creates_directory(tmp_path):
    save(tmp_path / "a" / "b", 1)
    assert load_latest(tmp_path / "a" / "b").version == 1


def test_keep_last_prunes_older_versions(tmp_path):
    for version in range(1, 6):
        save(tmp_path, version, keep_last=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["model-v00000004.json", "model-v00000004.pt", "model-v00000005.json", "model-v00000005.pt"]


def test_load_latest_picks_highest_version(tmp_path):
    for version in (3, 10, 2):
        save(tmp_path, version, keep_last=5)
    assert load_latest(tmp_path).version == 10


def test_load_latest_empty_or_missing_directory(tmp_path):
    assert load_latest(tmp_path) is None
    assert load_latest(tmp_path / "missing") is None


def test_truncated_newest_falls_back(tmp_path, caplog):
    save(tmp_path, 1)
    newest = save(tmp_path, 2)
    newest.write_bytes(newest.read_bytes()[:100])

    with caplog.at_level(logging.WARNING, logger="state.checkpoints"):
        checkpoint = load_latest(tmp_path)

    assert checkpoint.version == 1
    assert any(str(newest) in record.getMessage() for record in caplog.records)
    assert all(record.levelno == logging.WARNING for record in caplog.records)


def test_newest_without_metadata_falls_back(tmp_path):
    save(tmp_path, 1)
    newest = save(tmp_path, 2)
    newest.with_suffix(".json").unlink()
    assert load_latest(tmp_path).version == 1


def test_all_invalid_returns_none(tmp_path):
    path = save(tmp_path, 1)
    path.write_bytes(b"")
    assert load_latest(tmp_path) is None


def test_sha_mismatch_detected(tmp_path):
    path = save(tmp_path, 1)
    data = bytearray(path.read_bytes())
    data[-30] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_load_checkpoint_accepts_json_path(tmp_path):
    path = save(tmp_path, 1)
    assert load_checkpoint(path.with_suffix(".json")).path == path


def test_invalid_metadata_json_rejected(tmp_path):
    path = save(tmp_path, 1)
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)


def test_metadata_missing_key_rejected(tmp_path):
    path = save(tmp_path, 1)
    metadata = json.loads(path.with_suffix(".json").read_text())
    del metadata["items"]
    path.with_suffix(".json").write_text(json.dumps(metadata))
    with pytest.raises(CheckpointError, match="missing items"):
        load_checkpoint(path)


def test_metadata_version_mismatch_rejected(tmp_path):
    path = save(tmp_path, 1)
    metadata = json.loads(path.with_suffix(".json").read_text())
    metadata["version"] = 2
    path.with_suffix(".json").write_text(json.dumps(metadata))
    with pytest.raises(CheckpointError, match="version 2"):
        load_checkpoint(path)


class NotATensor:
    pass


def test_load_rejects_pickled_objects(tmp_path):
    path = save(tmp_path, 1)
    torch.save({"x": NotATensor()}, path)
    rewrite_sha(path)
    with pytest.raises(CheckpointError, match="torch.load failed"):
        load_checkpoint(path)


def test_load_rejects_non_checkpoint_name(tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint file name"):
        load_checkpoint(tmp_path / "weights.pt")


def test_checkpoint_error_is_value_error():
    assert issubclass(CheckpointError, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(version=-1), "version must be in"), (dict(version=10**8), "version must be in"),
     (dict(version=1, keep_last=0), "keep_last"), (dict(version=1, items=["a", "b"]), "items\\[0\\]")],
)
def test_save_rejects_invalid_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        save(tmp_path, **kwargs)


def test_extra_state_comes_back_apart_from_weights(tmp_path):
    model = SequentialRanker(RANKER_CONFIG)
    save_checkpoint(tmp_path, version=1, model=model, ranker_config=RANKER_CONFIG.to_dict(),
                    trainer_config=TRAINER_CONFIG.to_dict(), items=["", "a"], seed=9,
                    extra_state={"counts": torch.tensor([1.0, 2.0])})

    checkpoint = load_latest(tmp_path)

    assert set(checkpoint.model_state) == set(model.state_dict())
    assert checkpoint.extra_state["counts"].tolist() == [1.0, 2.0]

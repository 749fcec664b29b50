"""Versioned model checkpoints on local disk.

Version ``v`` is two files in one directory:

- ``model-v{v:08d}.pt``: ``torch.save`` of the model's ``state_dict()``, plus
  any extra state tensors (such as transition counts) under keys that start
  with ``extra:``;
- ``model-v{v:08d}.json``: the ranker and trainer configs, the item ids in row
  order, the seed, ``created_at`` (Unix seconds) and the SHA-256 of the ``.pt``.

Each file is written to a temporary name, flushed to disk and renamed with
``os.replace``, weights first. The ``.json`` therefore appears only when its
weights are complete, and the SHA-256 catches a ``.pt`` changed afterwards.

To restore a :class:`models.ranker.SequentialRanker`, which may have grown past
its initial item capacity::

    checkpoint = load_latest(directory)
    model = SequentialRanker.from_state_dict(
        RankerConfig.from_dict(checkpoint.ranker_config), checkpoint.model_state
    )
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["Checkpoint", "CheckpointError", "load_checkpoint", "load_latest", "save_checkpoint"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAX_VERSION = 99_999_999
EXTRA_PREFIX = "extra:"
_NAME = re.compile(r"^model-v(\d{8})\.(pt|json)$")
# Each metadata key, the Python types its JSON value may load as, and that JSON type's name.
_METADATA_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "format_version": ((int,), "integer"),
    "version": ((int,), "integer"),
    "ranker_config": ((dict,), "object"),
    "trainer_config": ((dict,), "object"),
    "items": ((list,), "array"),
    "seed": ((int,), "integer"),
    "created_at": ((int, float), "number"),
    "weights_sha256": ((str,), "string"),
}


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupt or inconsistent; the message names the path."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint. ``items[0]`` is ``""``, the padding row; ``path`` is the ``.pt`` file."""

    version: int
    model_state: dict[str, Tensor]
    ranker_config: dict[str, Any]
    trainer_config: dict[str, Any]
    items: list[str]
    seed: int
    created_at: float
    path: Path
    extra_state: dict[str, Tensor] = field(default_factory=dict)


def save_checkpoint(
    directory: Path,
    *,
    version: int,
    model: nn.Module,
    ranker_config: dict[str, Any],
    trainer_config: dict[str, Any],
    items: list[str],
    seed: int,
    keep_last: int = 3,
    extra_state: dict[str, Tensor] | None = None,
) -> Path:
    """Write checkpoint ``version`` to ``directory`` and return the path of its ``.pt`` file.

    ``items`` are the item ids in embedding row order, with ``items[0] == ""``
    for the padding row. ``extra_state`` tensors are saved beside the weights
    and come back as :attr:`Checkpoint.extra_state`. Saving an existing version replaces it. After the
    write, all but the ``keep_last`` newest versions are deleted.
    Raises ValueError for a ``version`` outside 0..MAX_VERSION, ``keep_last`` below 1, or
    ``items[0]`` other than ``""``.
    """
    if not 0 <= version <= MAX_VERSION:
        raise ValueError(f"version must be in 0..{MAX_VERSION} to fit the 8-digit file name, got {version}")
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    if not items or items[0] != "":
        head = items[0] if items else None
        raise ValueError(f"items[0] must be '' (the padding row), got {head!r}; pass the ids in row order")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights_path, metadata_path = _paths(directory, version)

    buffer = io.BytesIO()
    tensors = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    tensors.update({EXTRA_PREFIX + name: tensor.detach().cpu() for name, tensor in (extra_state or {}).items()})
    torch.save(tensors, buffer)
    weights = buffer.getvalue()
    metadata = {
        "format_version": FORMAT_VERSION,
        "version": version,
        "ranker_config": ranker_config,
        "trainer_config": trainer_config,
        "items": list(items),
        "seed": seed,
        "created_at": time.time(),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    _write_atomically(weights_path, weights)
    _write_atomically(metadata_path, json.dumps(metadata, indent=1).encode())
    logger.info("saved checkpoint path=%s version=%d bytes=%d n_items=%d",
                weights_path, version, len(weights), len(items))

    _prune(directory, keep_last)
    return weights_path


def load_checkpoint(path: Path) -> Checkpoint:
    """Load and verify one checkpoint, given its ``.pt`` or ``.json`` path.

    Raises :class:`CheckpointError` naming the path when a file is missing or
    unreadable, the metadata is invalid, or the weights do not match their SHA-256.
    """
    match = _NAME.match(Path(path).name)
    if match is None:
        raise CheckpointError(f"{path}: not a checkpoint file name; expected model-v<8 digits>.pt or .json")
    version = int(match.group(1))
    weights_path, metadata_path = _paths(Path(path).parent, version)

    metadata = _read_metadata(metadata_path, version)
    try:
        weights = weights_path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{weights_path}: cannot read weights ({exc.strerror})") from exc
    digest = hashlib.sha256(weights).hexdigest()
    if digest != metadata["weights_sha256"]:
        raise CheckpointError(
            f"{weights_path}: SHA-256 {digest} does not match {metadata['weights_sha256']} "
            f"recorded in {metadata_path.name}; the weights are truncated or were changed"
        )
    try:
        state = torch.load(io.BytesIO(weights), weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{weights_path}: torch.load failed: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{weights_path}: expected a state_dict, got {type(state).__name__}")

    extra = {name[len(EXTRA_PREFIX):]: tensor for name, tensor in state.items() if name.startswith(EXTRA_PREFIX)}
    model_state = {name: tensor for name, tensor in state.items() if not name.startswith(EXTRA_PREFIX)}
    return Checkpoint(
        version=version,
        model_state=model_state,
        ranker_config=metadata["ranker_config"],
        trainer_config=metadata["trainer_config"],
        items=metadata["items"],
        seed=metadata["seed"],
        created_at=metadata["created_at"],
        path=weights_path,
        extra_state=extra,
    )


def load_latest(directory: Path) -> Checkpoint | None:
    """Return the newest checkpoint in ``directory`` that loads and verifies, or None.

    An invalid checkpoint is skipped with a WARNING naming its path and the
    reason, and the next older one is tried. Returns None when the directory
    is missing or contains no valid checkpoint.
    """
    versions = _versions(Path(directory))
    for attempt, version in enumerate(versions, start=1):
        weights_path, _ = _paths(Path(directory), version)
        try:
            return load_checkpoint(weights_path)
        except CheckpointError as exc:
            logger.warning("skipping invalid checkpoint path=%s attempt=%d/%d reason=%s",
                           weights_path, attempt, len(versions), exc)
    return None


def _paths(directory: Path, version: int) -> tuple[Path, Path]:
    stem = f"model-v{version:08d}"
    return directory / f"{stem}.pt", directory / f"{stem}.json"


def _versions(directory: Path) -> list[int]:
    """Return the versions with at least one file in ``directory``, newest first."""
    if not directory.is_dir():
        return []
    found = {int(match.group(1)) for entry in directory.iterdir() if (match := _NAME.match(entry.name))}
    return sorted(found, reverse=True)


def _read_metadata(path: Path, version: int) -> dict[str, Any]:
    try:
        metadata = json.loads(path.read_bytes())
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read metadata ({exc.strerror})") from exc
    except ValueError as exc:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: metadata must be a JSON object")
    missing = [key for key in _METADATA_TYPES if key not in metadata]
    if missing:
        raise CheckpointError(f"{path}: metadata is missing {', '.join(missing)}")
    for key, (types, json_name) in _METADATA_TYPES.items():
        if isinstance(metadata[key], bool) or not isinstance(metadata[key], types):
            raise CheckpointError(f"{path}: metadata {key} is {metadata[key]!r:.60}; expected a JSON {json_name}")
    if metadata["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {metadata['format_version']!r} is not supported; expected {FORMAT_VERSION}"
        )
    if metadata["version"] != version:
        raise CheckpointError(
            f"{path}: metadata version {metadata['version']} does not match version {version} in the file name"
        )
    return metadata


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, and rename it to ``path``."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    # Sync the directory too, so the rename itself survives a power loss.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _prune(directory: Path, keep_last: int) -> None:
    old = _versions(directory)[keep_last:]
    for version in old:
        weights_path, metadata_path = _paths(directory, version)
        # The metadata goes first, so a crash never leaves a .json whose .pt is gone.
        metadata_path.unlink(missing_ok=True)
        weights_path.unlink(missing_ok=True)
    if old:
        logger.info("pruned checkpoints directory=%s n_deleted=%d keep_last=%d", directory, len(old), keep_last)

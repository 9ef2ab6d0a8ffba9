"""Checkpoint files: written whole or not at all, read weights-only.

`AtomicCheckpointIO` is Lightning's checkpoint writer for every run: it writes to a temporary
file in the same folder, fsyncs, then renames, so a kill during saving never leaves a torn
`last.ckpt`. `load_checkpoint` reads any checkpoint with `weights_only=True` and turns the
errors of a truncated file or a pickle with a code payload into one clear message.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class CheckpointError(ValueError):
    pass


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        text = str(err)
        if "Weights only load failed" in text or "Unsupported global" in text:
            raise CheckpointError(
                f"{path}: refused: the file holds Python objects beyond tensors and plain data "
                "(a pickle that could run code). Only weights-only checkpoints or safetensors are loaded."
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {text.splitlines()[0]}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return load_checkpoint(path, map_location or "cpu")

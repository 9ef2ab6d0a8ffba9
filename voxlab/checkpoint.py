"""Checkpoint files: written whole or not at all, read weights-only; and what VoxLab adds to a
Lightning checkpoint (the format section below: every writer and reader uses it).

`atomic_torch_save` (Lightning's writer for every run, callbacks.run_folder.AtomicCheckpointIO)
writes to a temporary file in the same folder, fsyncs, then renames, so a kill during saving
never leaves a torn checkpoint; a write that fails (disk full, quota, file-size limit) is one CheckpointError naming
the file and leaves no temporary file. `load_checkpoint` reads any checkpoint with `weights_only=True` and turns the
errors of a truncated file or a pickle with a code payload into one clear message.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from voxlab.safe_io import atomic_path


class CheckpointError(ValueError):
    """A checkpoint or weight file that cannot be used, named in the message: missing, unreadable
    (truncated, or a pickle with code: `read_weights_file`), or not what was asked for (its
    subclasses models.weights.WeightsError and models.tts_io.ModelPathError say which)."""


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    path = Path(path)
    try:
        with atomic_path(path, fsync=True) as tmp:
            torch.save(obj, tmp)
    except (OSError, RuntimeError) as err:
        # torch's zip writer reports a failed write as "unexpected pos" without the file or the reason
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
        raise CheckpointError(f"{path}: could not be written ({reason}): is the disk full, or a quota or file-size "
                              f"limit reached? Free space in {path.parent} and resume; the previous "
                              f"{path.name} (if any) is untouched") from None
    return path


def read_weights_file(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> Any:
    """torch.load(weights_only=True) of `path` (`mmap`: only what is used is read): the one reader
    of torch weight files. CheckpointError naming the file when it is missing, truncated or a
    pickle with code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # pickle errors, non-allowlisted globals, truncated files
        text = str(err)
        if "Weights only load failed" in text or "Unsupported global" in text:
            reason = ("refused: the file holds Python objects beyond tensors and plain data (a pickle that could "
                      "run code); only weights-only files or safetensors are loaded")
        else:
            reason = f"truncated or corrupt? {text.splitlines()[0] if text else type(err).__name__}"
        raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True): {reason}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    obj = read_weights_file(path, map_location)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj


def check_architecture(module: torch.nn.Module, path: str | Path) -> None:
    """A resumed run keeps its architecture: the module built from the (overridden) config must
    have exactly the checkpoint's weight names and shapes. Checked before the run folder is
    touched; the checkpoint is memory-mapped, so only its index is read."""
    obj = read_weights_file(path, mmap=True)
    saved = {k: tuple(v.shape) for k, v in (obj.get("state_dict") or {}).items()}
    built = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if saved == built:
        return
    missing, unexpected = sorted(set(saved) - set(built)), sorted(set(built) - set(saved))
    reshaped = [f"{k} {saved[k]} -> {built[k]}" for k in sorted(set(saved) & set(built)) if saved[k] != built[k]]
    parts = [f"{len(reshaped)} weights change shape (first: {', '.join(reshaped[:3])})" if reshaped else "",
             f"{len(missing)} weights would be missing (first: {', '.join(missing[:3])})" if missing else "",
             f"{len(unexpected)} new weights (first: {', '.join(unexpected[:3])})" if unexpected else ""]
    raise CheckpointError(f"{path}: the config (with its overrides) builds a different architecture than this "
                          f"checkpoint holds: {'; '.join(p for p in parts if p)}. A resumed run keeps its "
                          "architecture: drop the model override, or start a new run with it")


# ---- the format (docs/design.md section 2, "A VoxLab checkpoint") ---------------------------------
# Beside Lightning's own keys (state_dict, optimizer_states, loops, callbacks...):
CONFIG_KEY = "voxlab_config"        # the resolved run config, written by every VoxLab module
VAE_KEY = "voxlab_vae"              # TTS: the frozen AudioVAE, {"config": AudioVAE kwargs, "state_dict": ...}
TOKENIZER_KEY = "voxlab_tokenizer"  # TTS: the text frontend (voxlab.text.tokenizer_spec)
# AudioVAE checkpoints written before issue 13 held the same config a second time, as Lightning
# hyper-parameters; a checkpoint saved outside `make train` may hold it only there.
LEGACY_CONFIG_KEY = "hyper_parameters"


def write_config(checkpoint: dict, config: dict) -> None:
    checkpoint[CONFIG_KEY] = config


def read_config(checkpoint: dict) -> dict | None:
    """The config a checkpoint embeds: `voxlab_config`, else (older AudioVAE checkpoints) the
    `config` hyper-parameter."""
    config = checkpoint.get(CONFIG_KEY)
    if not config:
        config = (checkpoint.get(LEGACY_CONFIG_KEY) or {}).get("config")
    return config if isinstance(config, dict) else None


def read_config_file(path: str | Path) -> dict | None:
    """`read_config` of a checkpoint file, memory-mapped: only the small config is read."""
    obj = read_weights_file(path, mmap=True)
    return read_config(obj) if isinstance(obj, dict) else None


def submodule_state(checkpoint: dict, prefix: str) -> dict[str, torch.Tensor]:
    """The weights of the submodule `prefix` (e.g. "model", "vae_ema"), without the prefix."""
    head = prefix + "."
    return {k[len(head):]: v for k, v in (checkpoint.get("state_dict") or {}).items() if k.startswith(head)}

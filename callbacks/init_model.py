"""`InitFromModel`: a run that starts from a trained model (`init.model`, voxlab/cli/init_model.py)
gets that model's backbone weights before the first step."""
from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

import models
from models.lora import adapter_state_dict, merge_lora
from models.weights import WeightsError, load_strict
from voxlab.checkpoint import CheckpointError
from voxlab.config import ConfigError


def load_init_model(path: str | Path):
    """The TTSModel at `path` with any LoRA adapter merged; ConfigError naming init.model otherwise."""
    try:
        model = models.load(path, optimize=False)
    except (CheckpointError, FileNotFoundError) as err:  # ModelPathError, WeightsError among them
        raise ConfigError(f"init.model={path}: {err}") from None
    if model.backbone.config.get("lora"):
        merge_lora(model.backbone)
    return model


class InitFromModel(Callback):
    """Copies `model`'s backbone weights into the module (`pl_module.model`) when a run starts
    (not when it resumes: its checkpoint has the weights). Strict: a key or shape that differs
    is an error naming them; LoRA adapter weights are the module's own (a fresh adapter)."""

    def __init__(self, model: str | None = None):
        self.model = model

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or not self.model or trainer.ckpt_path is not None:
            return
        with torch.random.fork_rng():  # building the model draws random numbers: the run's stream is the seed's
            state = dict(load_init_model(self.model).backbone.state_dict())
        state.update(adapter_state_dict(pl_module.model))  # the run's own, freshly initialised adapters
        try:
            load_strict(pl_module.model, state, f"init.model={self.model}")
        except WeightsError as err:
            raise ConfigError(f"{err}\n(the run's model section does not describe init.model's network: "
                              "set init.architecture=model)") from None
        print(f"[init] backbone weights from {self.model}")

"""At the end of training, the model as an official VoxCPM folder: `<run>/export/` (`models.export`;
a LoRA run's adapters merged into the base weights), which the official `VoxCPM(path)` and
`make synth MODEL=<run>/export` load. A later run end of the same run (after a
resume) replaces it."""
from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

import models


class OfficialExport(Callback):
    def __init__(self, folder: str = "export"):
        self.folder = folder

    def on_train_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        out = Path(trainer.default_root_dir) / self.folder
        with torch.random.fork_rng():  # building the VAE draws random numbers: the run's stream stays as saved
            models.export(pl_module.tts_model(), out, overwrite=True)
        pl_module.train()  # tts_model() shares the backbone and left it in eval mode
        print(f"[export] official folder: {out}")

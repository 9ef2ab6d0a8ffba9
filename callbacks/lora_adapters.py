"""Writes the LoRA adapter beside every checkpoint of a LoRA run, in the official format
(`models.lora.save_adapter`): `<run>/lora/step_<N>/` and `<run>/lora/last/` (the newest), each with
`lora_weights.safetensors` and `lora_config.json` (base_model = the run's `init.model`, and a
base_fingerprint of its weights, checked when the adapter loads). A run
without adapters writes nothing."""
from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import Callback

from models.lora import lora_layers, save_adapter


class LoRAAdapters(Callback):
    def __init__(self, base_model: str | None = None):
        self.base_model = base_model

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if not trainer.is_global_zero or not lora_layers(pl_module.model):
            return
        root = Path(trainer.default_root_dir) / "lora"
        for name in (f"step_{trainer.global_step:07d}", "last"):
            save_adapter(pl_module.model, root / name, base_model=self.base_model)

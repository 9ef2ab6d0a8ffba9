"""Synthesises a fixed set of validation texts after each validation run (TTS modules).

The first `num_items` validation items are kept during the first validation run (the validation
loader is not shuffled, so they never change). Each time, their texts are synthesised zero-shot
with `pl_module.tts_model().generate_batch(texts, seed=..., ...)` and logged as audio and a log-mel
figure to TensorBoard (`val_audio/tts_item<i>/generated`, `val_mel/...`), and, with `save_files`,
written as wav + png under `<run>/samples/step_<N>/`. The ground truth, logged once, is the VAE
decoding of the item's cached target latents (what the backbone learns to predict; the batch holds
latents, not waveforms). Rank zero only; training's random streams and train/eval modes are left
as they were (exact resume).
"""
from __future__ import annotations

from pathlib import Path

import torch

from callbacks.audio_logging import AudioLoggingCallback


class TTSSamplesCallback(AudioLoggingCallback):
    def __init__(self, num_items: int = 2, every_n_validations: int = 1, save_files: bool = True,
                 max_len: int = 64, timesteps: int = 10, cfg: float = 2.0, seed: int = 0,
                 sample_rate: int = 16000, n_mels: int = 80):
        super().__init__(num_items, every_n_validations, save_files, sample_rate, n_mels)
        self.generation = {"max_len": int(max_len), "timesteps": int(timesteps), "cfg": float(cfg), "seed": int(seed)}
        self.texts: list[str] = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._validations or dataloader_idx or trainer.sanity_checking or len(self.texts) >= self.num_items:
            return
        self.items = self.items or []
        sel, feats = batch["loss_mask"].bool(), batch["audio_feats"]
        for i, text in enumerate(batch["text"][: self.num_items - len(self.texts)]):
            self.texts.append(text)
            self.items.append(feats[i][sel[i]].detach().cpu())  # target patches [n, P, D]

    def _decode(self, vae, patches: torch.Tensor) -> torch.Tensor:
        z = patches.reshape(-1, patches.shape[-1]).t()[None]  # [1, D, frames]
        dtype = next(vae.parameters()).dtype
        return vae.decode(z.to(device=next(vae.parameters()).device, dtype=dtype))[0].float().cpu()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self._due(trainer, bool(self.texts)):
            return
        step = int(trainer.global_step)
        root = Path(trainer.default_root_dir) / "samples" if self.save_files else None
        modes = {m: m.training for m in pl_module.modules()}
        try:
            with torch.random.fork_rng(devices=[pl_module.device] if pl_module.device.type == "cuda" else []):
                model = pl_module.tts_model()
                if model.sample_rate != self.sample_rate:  # the model's output rate (VoxCPM2: its VAE's, 48 kHz)
                    self.set_sample_rate(model.sample_rate)
                with torch.inference_mode():
                    if not self._ground_truth_logged:
                        for i, patches in enumerate(self.items):
                            self._emit(trainer, f"tts_item{i}/ground_truth", self._decode(model.vae, patches), step,
                                       root / "ground_truth" if root else None, f"item{i}")
                        self._ground_truth_logged = True
                    wavs = model.generate_batch(self.texts, **self.generation)
            for i, (wav, _) in enumerate(wavs):
                self._emit(trainer, f"tts_item{i}/generated", wav, step,
                           root / f"step_{step:06d}" if root else None, f"item{i}")
        finally:
            for m, training in modes.items():  # the backbone is shared with training
                m.training = training

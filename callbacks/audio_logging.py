"""Renders a fixed set of validation items through the model after each validation run.

The first `num_items` validation items are kept during the first validation run (the validation
loader is not shuffled, and they are never replaced). Each time, their reconstructions are logged as
audio and a log-mel figure to TensorBoard (when it is a logger) and, with `save_files`, written as
wav + png under `<log_dir>/audio/step_<N>/`; the ground truth is logged once. Rank zero only.
The module must offer `reconstruct(audio [B,1,T]) -> [B,1,T]`.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from voxlab.audio import MelSpectrogram, save_audio


def mel_figure(mel: torch.Tensor, title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.imshow(mel.cpu().numpy(), origin="lower", aspect="auto", interpolation="none")
    ax.set_title(title)
    ax.set_xlabel("frame")
    ax.set_ylabel("mel bin")
    fig.tight_layout()
    return fig


class AudioLoggingCallback(L.Callback):
    def __init__(self, num_items: int = 4, every_n_validations: int = 1, save_files: bool = True,
                 sample_rate: int = 16000, n_mels: int = 80):
        self.num_items, self.every = int(num_items), max(1, int(every_n_validations))
        self.save_files, self.n_mels = save_files, int(n_mels)
        self.set_sample_rate(sample_rate)
        self.items: list[torch.Tensor] | None = None
        self._validations = 0
        self._ground_truth_logged = False

    def set_sample_rate(self, rate: int) -> None:
        """The rate audio is logged and written at (and its mel figure computed at)."""
        self.sample_rate = int(rate)
        self.mel = MelSpectrogram(self.sample_rate, n_fft=1024, hop_length=256, n_mels=self.n_mels, log=True)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        # Collected during the first validation run only, so the items never change afterwards.
        if self._validations == 0 and dataloader_idx == 0 and not trainer.sanity_checking:
            self.items = self.items or []
            for i in range(batch["audio"].shape[0]):
                if len(self.items) < self.num_items:
                    self.items.append(batch["audio"][i, :, : batch["audio_lens"][i]].detach().cpu())

    def _step(self, trainer, pl_module) -> int:
        return int(getattr(pl_module, "generator_step", trainer.global_step))

    def _emit(self, trainer, tag: str, wav: torch.Tensor, step: int, folder: Path | None, stem: str) -> None:
        wav = wav.float().reshape(-1).cpu()
        fig = mel_figure(self.mel(wav[None])[0], f"{tag} (step {step})")
        for logger in trainer.loggers:
            exp = getattr(logger, "experiment", None)
            if hasattr(exp, "add_audio") and hasattr(exp, "add_figure"):
                exp.add_audio(f"val_audio/{tag}", wav.clamp(-1, 1)[None], step, self.sample_rate)
                exp.add_figure(f"val_mel/{tag}", fig, step)
        if folder is not None:
            save_audio(folder / f"{stem}.wav", wav, self.sample_rate)
            fig.savefig(folder / f"{stem}.png")
        import matplotlib.pyplot as plt
        plt.close(fig)

    def _due(self, trainer, have_items: bool) -> bool:
        """Counts this validation run and says whether it emits (rank zero, items kept, every N runs)."""
        if trainer.sanity_checking or not trainer.is_global_zero or not have_items:
            return False
        self._validations += 1
        return (self._validations - 1) % self.every == 0

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self._due(trainer, bool(self.items)):
            return
        step = self._step(trainer, pl_module)
        root = Path(trainer.log_dir or trainer.default_root_dir) / "audio" if self.save_files else None
        if not self._ground_truth_logged:
            for i, wav in enumerate(self.items):
                self._emit(trainer, f"item{i}/ground_truth", wav, step,
                           root / "ground_truth" if root else None, f"item{i}")
            self._ground_truth_logged = True
        for i, wav in enumerate(self.items):
            recon = pl_module.reconstruct(wav[None].to(pl_module.device))[0]
            self._emit(trainer, f"item{i}/reconstruction", recon, step,
                       root / f"step_{step:06d}" if root else None, f"item{i}")

"""The one data path for waveforms: manifest -> AudioDataset -> frame-budget batches.

Batches are dicts: `audio` float [B, 1, T] (zero padded), `audio_lens` long [B] (samples),
`text`, `utt`, `speaker`, `lang` (lists of str).
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.base import BudgetDataModule
from datamodules.manifest import Entry, read_configured
from voxlab.audio import AudioError, load_audio, peak_normalize, sample_problem

log = logging.getLogger(__name__)


class AudioDataset(Dataset):
    """`lazy` (data.validate=lazy: the manifest's audio was not checked up front): an entry whose
    audio turns out unreadable or unusable is skipped when it is met, for the next one that reads,
    and counted in `skipped` (per process: each loader worker counts its own)."""

    def __init__(self, entries: list[Entry], sample_rate: int, crop_samples: int | None = None,
                 peak_norm: bool = False, seed: int = 0, lazy: bool = False):
        self.entries, self.sample_rate = entries, sample_rate
        self.crop_samples, self.peak_norm, self.seed = crop_samples, peak_norm, seed
        self.lazy, self.skipped = lazy, 0

    def __len__(self) -> int:
        return len(self.entries)

    def lengths(self) -> list[int]:
        """Samples per item as batched (after cropping), for the frame-budget sampler."""
        n = [int(round(e.duration * self.sample_rate)) for e in self.entries]
        return [min(x, self.crop_samples) for x in n] if self.crop_samples else n

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if not self.lazy:
            entry = self.entries[index]
            return self.item(load_audio(entry.audio, self.sample_rate), entry, index, epoch)
        for step in range(len(self.entries)):  # the next entry that reads: deterministic, so resumes hold
            i = (index + step) % len(self.entries)
            try:
                wav = load_audio(self.entries[i].audio, self.sample_rate)
                problem = sample_problem(wav)
            except AudioError as err:
                problem = str(err)
            if problem is None:
                return self.item(wav, self.entries[i], i, epoch)
            self.skipped += 1
            log.warning("data.validate=lazy: skipped %s (manifest line %d): %s (%d skipped so far)",
                        self.entries[i].utt, self.entries[i].line, problem, self.skipped)
        raise AudioError("data.validate=lazy: no entry of the manifest has usable audio")

    def item(self, wav: np.ndarray, entry: Entry, index: int, epoch: int) -> dict:
        """The training item of `entry` (`index` in its manifest) from its samples: the file path and
        the shard stream (`datamodules.shards`) share it."""
        if self.peak_norm:
            wav = peak_normalize(wav)
        if self.crop_samples and len(wav) > self.crop_samples:
            # A function of (seed, epoch, item): identical with workers, across ranks and after a resume.
            rng = np.random.default_rng([self.seed, epoch, index])
            start = int(rng.integers(0, len(wav) - self.crop_samples + 1))
            wav = wav[start:start + self.crop_samples]
        return {"audio": torch.from_numpy(np.ascontiguousarray(wav)), "text": entry.text,
                "utt": entry.utt, "speaker": entry.speaker, "lang": entry.lang}


def collate_audio(items: list[dict]) -> dict:
    lens = torch.tensor([len(it["audio"]) for it in items], dtype=torch.long)
    audio = torch.zeros(len(items), 1, int(lens.max()))
    for i, it in enumerate(items):
        audio[i, 0, : lens[i]] = it["audio"]
    out = {"audio": audio, "audio_lens": lens}
    for key in ("text", "utt", "speaker", "lang"):
        out[key] = [it[key] for it in items]
    return out


class AudioDataModule(BudgetDataModule):
    """Reads `config.data`: manifests, sample rate, frame budget, crop, workers."""

    collate_fn = staticmethod(collate_audio)

    def _dataset(self, manifest: str, crop: bool) -> AudioDataset:
        entries, _ = read_configured(self.cfg, manifest)
        crop_samples = int(self.cfg.crop_seconds * self.cfg.sample_rate) if crop and self.cfg.crop_seconds else None
        return AudioDataset(entries, self.cfg.sample_rate, crop_samples, self.cfg.peak_normalize, int(self.config.seed),
                            lazy=self.cfg.get("validate", "full") == "lazy")

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.train_set = self._dataset(self.cfg.train_manifest, crop=True)
        if stage in (None, "fit", "validate"):
            self.val_set = self._dataset(self.cfg.val_manifest, crop=False)

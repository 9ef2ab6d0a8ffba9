"""What the waveform and latent datamodules share: frame-budget loaders and a resumable position.

The training sampler's position is saved in every checkpoint as the number of batches this rank
has trained since the start, read from Lightning's own progress counter rather than from the
sampler (which the data fetcher runs ahead of training). A resumed run's sampler seeks to it.
"""
from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from datamodules.manifest import read_configured
from datamodules.sampler import FrameBudgetBatchSampler


def bucketing(cfg) -> dict:
    """The sampler's length buckets from `config.data`; a run saved before these keys existed
    resumes with the values it trained with (64, 0.1)."""
    return {"bucket_size": int(cfg.get("bucket_size", 64)), "jitter": float(cfg.get("length_jitter", 0.1))}


def private_generator(seed: int) -> torch.Generator:
    """A DataLoader's own RNG. Each new iterator (every epoch, every validation) draws its worker
    seed from the loader's generator, by default from torch's global RNG, which the model's noise
    also draws from: an epoch boundary would shift training's randomness, and file and shard
    loaders (which make iterators at different times) would diverge. The worker seed carries no
    data randomness here (datasets draw theirs from (seed, epoch, index)), so it need not be saved."""
    return torch.Generator().manual_seed(seed)


class BudgetDataModule(L.LightningDataModule):
    collate_fn = None  # set by subclasses
    lazy_ok = True  # data.validate=lazy is honoured (the waveform path); False: audio always checked up front

    def __init__(self, config):
        super().__init__()
        self.config, self.cfg = config, config.data
        self._resume_position: dict | None = None

    def validate(self) -> None:
        """Both manifests read and checked before the run folder is written (a missing or
        non-UTF-8 manifest, or a bad line with data.strict, fails here)."""
        for key in ("train_manifest", "val_manifest"):
            read_configured(self.cfg, self.cfg[key], lazy_ok=type(self).lazy_ok)

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        sampler = FrameBudgetBatchSampler(dataset.lengths(), self.cfg.frame_budget, self.cfg.max_batch_size,
                                          shuffle=shuffle, seed=int(self.cfg.shuffle_seed), with_epoch=shuffle,
                                          **bucketing(self.cfg))
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=type(self).collate_fn,
                          num_workers=self.cfg.num_workers, persistent_workers=self.cfg.num_workers > 0,
                          generator=private_generator(int(self.cfg.shuffle_seed)))

    def train_dataloader(self) -> DataLoader:
        loader = self._loader(self.train_set, shuffle=True)
        if self._resume_position is not None:
            loader.batch_sampler.seek(self._resume_position)
            self._resume_position = None
        return loader

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def state_dict(self) -> dict:
        trainer = self.trainer
        if trainer is None:
            return {}
        return {"batches_trained": int(trainer.fit_loop.epoch_loop.batch_progress.total.processed)}

    def load_state_dict(self, state: dict) -> None:
        self._resume_position = state.get("batches_trained")

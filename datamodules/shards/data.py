"""DataModules that train from shards: waveforms (AudioVAE) and latents (backbone).

Select them with `datamodule._target_=datamodules.shards.ShardAudioDataModule` (or
`ShardTTSDataModule`) and `data.train_shards=<folder> data.val_shards=<folder>` (written by
`make shards`). A shard item becomes the same training item as its manifest line does in the
file path (`AudioDataset.item`, `models.packing.pack_utterance`, the same collate functions), so
the same data and seed give the same batches when one window holds the whole corpus.

The checkpoint records, for every stream of every rank, the shard and offset reached
(`datamodules.shards.stream`); a resumed run continues each stream from there.
"""
from __future__ import annotations

import functools
import math
import random
from pathlib import Path

import lightning as L
import torch.distributed as dist
from torch.utils.data import DataLoader

from datamodules.audio import AudioDataset, collate_audio
from datamodules.base import bucketing, private_generator
from datamodules.latents import vae_fingerprint
from datamodules.manifest import Entry
from datamodules.shards.format import INDEX, ShardError, decode_audio, latent_of, read_index
from datamodules.shards.stream import STATE_KEY, WINDOW_STRIDE, ShardStream
from datamodules.shards.write import finish, latent_key, manifest_lines, write_shards
from datamodules.tts import collate_tts, pair_prompts, pinned_vae
from models.packing import pack_utterance
from voxlab.text import build_tokenizer


def _duration_within(low: float, high: float, meta: dict) -> bool:
    return low <= meta["duration"] <= high  # the file path's data.min_duration / max_duration


def _entry(meta: dict) -> Entry:
    return Entry(meta["utt"], Path(meta["utt"]), meta["text"], float(meta["duration"]), meta.get("speaker", ""),
                 meta.get("lang", ""))


class AudioDecoder:
    """Audio shards -> the AudioDataModule's batches."""

    def __init__(self, dataset: AudioDataset, folder: Path):
        self.dataset, self.folder = dataset, folder

    def window(self, items, window_id):
        return _AudioWindow(self, items)


class _AudioWindow:
    def __init__(self, decoder: AudioDecoder, items):
        self.decoder, self.items = decoder, items
        d = decoder.dataset
        self.lengths = AudioDataset([_entry(m) for m, _ in items], d.sample_rate, d.crop_samples).lengths()

    def batch(self, positions, epoch):
        d, out = self.decoder.dataset, []
        for p in positions:
            meta, sample = self.items[p]
            wav = decode_audio(sample[meta["audio"]], d.sample_rate, f"{self.decoder.folder}: {meta['utt']}")
            out.append(d.item(wav, _entry(meta), meta["index"], epoch))
        return collate_audio(out)


class TTSDecoder:
    """Latent shards -> the TTSDataModule's packed batches (prompts paired inside each window)."""

    def __init__(self, tokenizer, patch_size: int, prompt_prob: float, seed: int, prompt_loss: bool = False):
        self.tok, self.patch, self.prompt_prob, self.seed = tokenizer, patch_size, prompt_prob, seed
        self.prompt_loss = prompt_loss

    def window(self, items, window_id):
        return _TTSWindow(self, items, window_id)


class _TTSWindow:
    def __init__(self, decoder: TTSDecoder, items, window_id: int):
        self.d, self.items = decoder, items
        metas = [m for m, _ in items]
        self.text_ids = [decoder.tok.encode(m["text"]) for m in metas]
        rng = random.Random(decoder.seed + WINDOW_STRIDE * window_id)  # window 0: the file path's draw
        self.prompts = pair_prompts([m.get("speaker", "") for m in metas], decoder.prompt_prob, rng)
        if any(p is not None for p in self.prompts) and "prompt_latent" not in metas[0]:
            raise ShardError("data.prompt_prob > 0 but these latent shards hold no prompt form "
                             "(write them without --no-prompts)")
        frames = lambda m, name: math.ceil(m[name]["shape"][0] / decoder.patch)  # noqa: E731
        self.lengths = [len(self.text_ids[i]) + frames(m, "latent") + 2
                        + (0 if p is None else len(self.text_ids[p]) + frames(metas[p], "prompt_latent"))
                        for i, (m, p) in enumerate(zip(metas, self.prompts))]

    def batch(self, positions, epoch):
        out = []
        for i in positions:
            (meta, sample), p = self.items[i], self.prompts[i]
            prompt = None if p is None else self.items[p]
            item = pack_utterance(self.text_ids[i], latent_of(sample, meta),
                                  None if p is None else self.text_ids[p],
                                  None if p is None else latent_of(prompt[1], prompt[0], "prompt_latent"),
                                  patch_size=self.d.patch, audio_start_id=self.d.tok.audio_start_id,
                                  audio_end_id=self.d.tok.audio_end_id, prompt_loss=self.d.prompt_loss)
            item.update(utt=meta["utt"], text=meta["text"], speaker=meta.get("speaker", ""),
                        lang=meta.get("lang", ""), prompt_utt=None if p is None else prompt[0]["utt"])
            out.append(item)
        return collate_tts(out)


class ShardDataModule(L.LightningDataModule):
    """Streams `data.train_shards` / `data.val_shards`; subclasses give the decoder."""

    kind = ""

    def __init__(self, config):
        super().__init__()
        self.config, self.cfg = config, config.data
        self._positions: dict[int, dict] = {}
        self._resume: dict | None = None

    def folder(self, split: str) -> Path:
        folder = self.cfg.get(f"{split}_shards")
        if not folder:
            raise ShardError(f"data.{split}_shards is not set (a folder written by `make shards`)")
        kind = read_index(folder)["kind"]
        if kind != self.kind:
            raise ShardError(f"{folder}: {kind} shards, but {type(self).__name__} reads {self.kind} shards")
        return Path(folder)

    def validate(self) -> None:
        """Before the run folder is written: each configured shard set is finished and whole."""
        for split in ("train", "val"):
            if self.cfg.get(f"{split}_shards"):
                self.folder(split)

    def decoder(self, split: str):
        raise NotImplementedError

    def _stream(self, split: str) -> ShardStream:
        trainer, train = self.trainer, split == "train"
        keep = functools.partial(_duration_within, float(self.cfg.min_duration), float(self.cfg.max_duration))
        return ShardStream(self.folder(split), self.decoder(split), self.cfg.frame_budget, self.cfg.max_batch_size,
                           int(self.cfg.get("shuffle_buffer", 10_000)), int(self.cfg.shuffle_seed), train,
                           trainer.global_rank if trainer else 0, trainer.world_size if trainer else 1,
                           self.cfg.num_workers, keep=keep, **bucketing(self.cfg))

    def _loader(self, stream: ShardStream) -> DataLoader:
        n = self.cfg.num_workers
        return DataLoader(stream, batch_size=None, num_workers=n, persistent_workers=n > 0,
                          generator=private_generator(int(self.cfg.shuffle_seed)))

    def train_dataloader(self) -> DataLoader:
        stream = self._stream("train")
        if self._resume is not None:
            if self._resume["streams"] != stream.streams:
                raise ShardError(f"the checkpoint streamed {self._resume['streams']} streams (ranks x workers), "
                                 f"this run has {stream.streams}: resume with the same ranks and data.num_workers")
            stream.positions = {int(s): p for s, p in self._resume["positions"].items()}
            stream.rotation = self._resume["batches"] % stream.workers
            self._positions = dict(stream.positions)
            self._resume = None
        return self._loader(stream)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._stream("val"))

    def on_before_batch_transfer(self, batch, dataloader_idx):
        state = batch.pop(STATE_KEY, None)
        if state is not None and self.trainer is not None and self.trainer.training:
            self._positions[state.pop("stream")] = state  # where that stream resumes after this batch
        return batch

    def state_dict(self) -> dict:
        if self.trainer is None:
            return {}
        positions = dict(self._positions)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered = [None] * dist.get_world_size()  # every rank saves the checkpoint's state
            dist.all_gather_object(gathered, positions)
            positions = {s: p for part in gathered for s, p in part.items()}
        workers = max(1, self.cfg.num_workers)
        return {"streams": self.trainer.world_size * workers, "positions": {str(s): p for s, p in positions.items()},
                "batches": int(self.trainer.fit_loop.epoch_loop.batch_progress.total.processed)}

    def load_state_dict(self, state: dict) -> None:
        self._resume = state or None


class ShardAudioDataModule(ShardDataModule):
    """Waveform batches for the AudioVAE (reads `config.data` as `AudioDataModule` does)."""

    kind = "audio"

    def decoder(self, split: str) -> AudioDecoder:
        crop = split == "train" and self.cfg.crop_seconds
        dataset = AudioDataset([], self.cfg.sample_rate, int(self.cfg.crop_seconds * self.cfg.sample_rate) if crop else None,
                               self.cfg.peak_normalize, int(self.config.seed))
        return AudioDecoder(dataset, self.folder(split))


class ShardTTSDataModule(ShardDataModule):
    """Packed latent batches for the backbone. `data.train_shards`/`val_shards`: latent shards
    written by `make shards --vae`; unset, the latent cache at scale is used: latent shards of the
    manifests beside them in `latents/<cache key>/` (key: the VAE's fingerprint, the patch and
    `data.latent_dtype`), built when missing by every rank at once (shard i by rank i % world,
    `data.cache_workers` processes each), `data.shard_mb` per shard. The key must be the
    configured VAE's."""

    kind = "latents"

    def validate(self) -> None:
        """Before the run folder is written: the VAE loaded and pinned in the config (path and
        weights fingerprint, `datamodules.tts.pinned_vae`), so a resume stops if it changed."""
        super().validate()
        self._vae()

    def _vae(self) -> tuple[Path, object, str]:
        """(path, VAE, cache fingerprint) of the run's pinned VAE, loaded once."""
        if getattr(self, "_vae_cache", None) is None:
            vae = pinned_vae(self.config)
            self._vae_cache = (Path(self.config.vae.path), vae,
                               vae_fingerprint(vae, self.cfg.sample_rate, self.config.model.patch_size))
        return self._vae_cache

    def vae_key(self, dtype: str) -> str:
        return latent_key(self._vae()[2], dtype)

    def _prompts(self, split: str) -> bool:
        return split == "train" and float(self.cfg.prompt_prob) > 0

    def folder(self, split: str) -> Path:
        if self.cfg.get(f"{split}_shards"):
            return super().folder(split)
        manifest = Path(self.cfg[f"{split}_manifest"]).resolve()
        forms = "targets+prompts" if self._prompts(split) else "targets"
        return manifest.parent / "latents" / self.vae_key(self.cfg.latent_dtype) / f"{manifest.stem}-{forms}"

    def _build(self, split: str) -> None:
        folder = self.folder(split)
        lines = manifest_lines(self.cfg[f"{split}_manifest"])[2]
        if (folder / INDEX).is_file() and read_index(folder).get("lines") == lines:
            return  # built from the manifest as it is now; else the changed shards are written again
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        write_shards(self.cfg[f"{split}_manifest"], folder, self.cfg.shard_mb, str(self._vae()[0]), self.cfg.latent_dtype,
                     self._prompts(split), self.config.model.patch_size, self.cfg.sample_rate, self.cfg.cache_workers,
                     rank, world, progress=rank == 0)
        if trainer and world > 1:
            trainer.strategy.barrier("latent shards")  # every rank's share written
        finish(folder, lines)

    def setup(self, stage: str | None = None) -> None:
        self.tokenizer = build_tokenizer(self.config.text)
        vocab = self.config.model.lm.vocab_size
        if self.tokenizer.vocab_size > vocab:
            raise ValueError(f"the tokenizer has {self.tokenizer.vocab_size} ids but model.lm.vocab_size is {vocab}")
        for split in ("train", "val"):
            if not self.cfg.get(f"{split}_shards"):
                self._build(split)
            lat = read_index(self.folder(split))["latents"]
            if lat["key"] != self.vae_key(lat["dtype"]):
                raise ShardError(f"{self.folder(split)}: latents of another VAE or patch than the configured one "
                                 f"(key {self.vae_key(lat['dtype'])}): write them again with `make shards ... --vae`")

    def decoder(self, split: str) -> TTSDecoder:
        prob = float(self.cfg.prompt_prob) if split == "train" else 0.0
        return TTSDecoder(self.tokenizer, self.config.model.patch_size, prob, int(self.config.seed),
                          bool(self.cfg.get("prompt_loss", False)))

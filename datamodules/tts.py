"""Backbone training data: manifest -> cached VAE latents + text ids -> packed sequences.

The waveforms are encoded once by the configured VAE into the latent cache
(`datamodules.latents`, keyed by the VAE's weights); training reads latents only. Each item is
packed into the layout of docs/design.md section 3 by `models.packing`; with probability
`data.prompt_prob`, another utterance of the same speaker is its prompt (continuation training
for voice cloning), read in its prompt form: encoded from the waveform left-padded to whole
patches, exactly as inference encodes a prompt wav (`datamodules.latents`). The pairing is drawn once from the seed, so item lengths (and so the frame
budget of every batch) are known before the epoch starts.

`make cache EXP=... SCALE=...` builds the cache alone; training builds what is missing first.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
from collections import defaultdict
from pathlib import Path

from torch.utils.data import Dataset

from datamodules.base import BudgetDataModule

from datamodules.latents import PROMPT_SUFFIX, LatentStore, build_cache, prompt_name
from datamodules.manifest import Entry, read_manifest
from models.packing import collate_packed, pack_utterance
from voxlab.text import build_tokenizer


def resolve_vae_path(cfg) -> Path:
    """`vae.path`: a file or run folder, or `auto` = the newest finished AudioVAE run of this scale."""
    from voxlab.runs import list_runs, read_status

    path = cfg.vae.path
    if path and path != "auto":
        path = Path(path)
        if path.is_dir() and (path / "checkpoints" / "last.ckpt").is_file():
            return path / "checkpoints" / "last.ckpt"
        if not path.exists():
            raise FileNotFoundError(f"vae.path={path} does not exist (a VAE checkpoint, run folder, "
                                    "export or official audiovae.pth)")
        return path
    for run in reversed(list_runs(cfg.run.root, cfg.vae.experiment)):
        cfg_file = run / "config.yaml"
        if read_status(run).get("state") == "finished" and cfg_file.is_file():
            from voxlab.config import load_run_config

            if load_run_config(run).get("scale") == cfg.scale and (run / "checkpoints" / "last.ckpt").is_file():
                return run / "checkpoints" / "last.ckpt"
    raise FileNotFoundError(
        f"vae.path=auto found no finished {cfg.vae.experiment!r} run at scale {cfg.scale!r} under "
        f"{cfg.run.root}/: train one first (make train EXP={cfg.vae.experiment} SCALE={cfg.scale}) "
        "or set ARGS=\"vae.path=<checkpoint, run folder or official audiovae.pth>\"")


def ensure_caches(cfg, progress: bool = True) -> dict[str, Path]:
    """Latent cache folders for the train and val manifests, building what is missing."""
    from models import load_audiovae

    vae = load_audiovae(resolve_vae_path(cfg))
    if vae.sample_rate != cfg.data.sample_rate:
        raise ValueError(f"the VAE works at {vae.sample_rate} Hz but data.sample_rate is {cfg.data.sample_rate}")
    prompts = {"train": float(cfg.data.prompt_prob) > 0, "val": False}  # val items have no prompt
    return {split: build_cache(cfg.data[f"{split}_manifest"], vae, cfg.data.sample_rate, cfg.model.patch_size,
                               prompts[split], progress=progress)
            for split in ("train", "val")}


class TTSDataset(Dataset):
    def __init__(self, entries: list[Entry], store: LatentStore, tokenizer, patch_size: int,
                 prompt_prob: float = 0.0, seed: int = 0):
        self.entries, self.store, self.tok, self.patch = entries, store, tokenizer, patch_size
        self.text_ids = [tokenizer.encode(e.text) for e in entries]
        by_speaker = defaultdict(list)
        for i, e in enumerate(entries):
            by_speaker[e.speaker].append(i)
        rng = random.Random(seed)
        self.prompts: list[int | None] = []
        for i, e in enumerate(entries):
            others = [j for j in by_speaker[e.speaker] if j != i] if e.speaker else []
            self.prompts.append(rng.choice(others) if others and rng.random() < prompt_prob else None)
        needed = [e.utt for e in entries] + [prompt_name(entries[p].utt) for p in self.prompts if p is not None]
        missing = [name.replace(PROMPT_SUFFIX, " (prompt form)") for name in needed if name not in store]
        if missing:
            raise KeyError(f"{len(missing)} utterances are not in the latent cache {store.folder} "
                           f"(first: {missing[:3]}); rebuild it with `make cache`")

    def __len__(self) -> int:
        return len(self.entries)

    def _patches(self, i: int, prompt: bool = False) -> int:
        utt = self.entries[i].utt
        return math.ceil(self.store[prompt_name(utt) if prompt else utt].shape[0] / self.patch)

    def lengths(self) -> list[int]:
        """Packed sequence positions per item (text + 101 + patches + 102), for the sampler."""
        out = []
        for i, p in enumerate(self.prompts):
            n = len(self.text_ids[i]) + self._patches(i) + 2
            if p is not None:
                n += len(self.text_ids[p]) + self._patches(p, prompt=True)
            out.append(n)
        return out

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        i = key[0] if isinstance(key, tuple) else key  # (index, epoch) from the training sampler
        p = self.prompts[i]
        item = pack_utterance(self.text_ids[i], self.store[self.entries[i].utt],
                              None if p is None else self.text_ids[p],
                              None if p is None else self.store[prompt_name(self.entries[p].utt)],
                              patch_size=self.patch, audio_start_id=self.tok.audio_start_id,
                              audio_end_id=self.tok.audio_end_id)
        e = self.entries[i]
        item.update(utt=e.utt, text=e.text, speaker=e.speaker, lang=e.lang,
                    prompt_utt=None if p is None else self.entries[p].utt)
        return item


def collate_tts(items: list[dict]) -> dict:
    batch = collate_packed(items)
    for key in ("utt", "text", "speaker", "lang", "prompt_utt"):
        batch[key] = [it[key] for it in items]
    return batch


class TTSDataModule(BudgetDataModule):
    """Reads `config.data` (manifests, frame budget in packed positions, prompt_prob), `config.text`
    (tokenizer), `config.vae` (which VAE's latents) and `config.model.patch_size`."""

    collate_fn = staticmethod(collate_tts)

    def prepare_data(self) -> None:  # rank zero only: encode what is missing
        ensure_caches(self.config)

    def setup(self, stage: str | None = None) -> None:
        caches = ensure_caches(self.config, progress=False)  # already built: only resolves the folders
        self.tokenizer = build_tokenizer(self.config.text)
        vocab = self.config.model.lm.vocab_size
        if self.tokenizer.vocab_size > vocab:
            raise ValueError(f"the tokenizer has {self.tokenizer.vocab_size} ids but model.lm.vocab_size is {vocab}")
        for split in ("train", "val"):
            entries, _ = read_manifest(self.cfg[f"{split}_manifest"], self.cfg.min_duration, self.cfg.max_duration,
                                       self.cfg.strict)
            prob = self.cfg.prompt_prob if split == "train" else 0.0
            ds = TTSDataset(entries, LatentStore(caches[split]), self.tokenizer, self.config.model.patch_size,
                            prob, int(self.config.seed))
            setattr(self, f"{split}_set", ds)


def main(argv: list[str] | None = None) -> int:
    """`make cache EXP=... SCALE=...`: encode the corpus with the experiment's VAE."""
    from voxlab.config import ConfigError, compose

    parser = argparse.ArgumentParser(description="Build the latent cache of an experiment's corpus.")
    parser.add_argument("--exp", default="d256s9")
    parser.add_argument("--scale", default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    try:
        cfg = compose(args.exp, args.scale, args.overrides)
        for split, folder in ensure_caches(cfg).items():
            print(f"[cache] {split}: {folder} ({len(LatentStore(folder).index)} utterances)")
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

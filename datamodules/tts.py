"""Backbone training data: manifest -> cached VAE latents + text ids -> packed sequences.

The waveforms are encoded once by the configured VAE into the latent cache
(`datamodules.latents`, keyed by the VAE's weights); training reads latents only. Each item is
packed into the layout of docs/design.md section 3 by `models.packing`; with probability
`data.prompt_prob`, another utterance of the same speaker is its prompt (continuation training
for voice cloning), read in its prompt form: encoded from the waveform left-padded to whole
patches, exactly as inference encodes a prompt wav (`datamodules.latents`). The pairing is drawn once from the seed, so item lengths (and so the frame
budget of every batch) are known before the epoch starts.

The run's VAE is pinned before the run starts (`pinned_vae`): `vae.path` (`auto` resolved) and
`vae.fingerprint` (a hash of its weights) go into the run's config, so a resume encodes with
exactly that VAE, or stops when it is gone or changed.

An item of an official manifest with a `ref_audio` (`datamodules.manifest.official_fields`) is
packed in the official layout `[103, ref patches, 104, text, 101, target patches, 102]` with the
loss and the stop label on the target only (`models.packing.pack_with_reference`), and gets no
continuation prompt: the reference is its prompt.

`make cache EXP=... SCALE=...` builds the cache alone; training builds what is missing first.
"""
from __future__ import annotations

import argparse
import logging
import math
import random
import sys
from collections import defaultdict
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from datamodules.base import BudgetDataModule
from datamodules.corpus.phones import PhoneLabels, corpus_phones
from datamodules.latents import (CacheInterrupted, LatentStore, build_cache, cache_dir, check_writable, latent_name,
                                 vae_fingerprint, weights_fingerprint)
from datamodules.manifest import Entry, read_configured
from models import load_audiovae
from models.packing import NO_LABEL, collate_packed, pack_utterance, pack_with_reference
from voxlab.config import ConfigError, compose
from voxlab.runs import find_run, has_last_checkpoint, last_checkpoint
from voxlab.text import build_tokenizer

log = logging.getLogger(__name__)
# the tiny VAE the repository ships (its README says how it was made): `auto` at tiny scale falls back to it
SHIPPED_TINY_VAE = Path(__file__).resolve().parents[1] / "assets" / "tiny_audiovae"


def resolve_vae_path(cfg) -> Path:
    """`vae.path`: a file or run folder, or `auto` = the newest finished AudioVAE run of this scale."""
    path = cfg.vae.path
    if path and path != "auto":
        path = Path(path)
        if has_last_checkpoint(path):
            return last_checkpoint(path)
        if not path.exists():
            raise FileNotFoundError(f"vae.path={path} does not exist (a VAE checkpoint, run folder, "
                                    "export or official audiovae.pth)")
        return path
    run = find_run(cfg.run.root, cfg.vae.experiment, cfg.scale, finished=True, with_last=True)
    if run is not None:
        return last_checkpoint(run)
    if cfg.scale == "tiny" and (SHIPPED_TINY_VAE / "audiovae.pth").is_file():
        print(f"[vae] vae.path=auto: no finished {cfg.vae.experiment!r} run at scale tiny under {cfg.run.root}/, "
              f"so the VAE the repository ships: {SHIPPED_TINY_VAE}", flush=True)
        return SHIPPED_TINY_VAE
    raise FileNotFoundError(
        f"vae.path=auto found no finished {cfg.vae.experiment!r} run at scale {cfg.scale!r} under "
        f"{cfg.run.root}/: train one first (make train EXP={cfg.vae.experiment} SCALE={cfg.scale}) "
        "or set ARGS=\"vae.path=<checkpoint, run folder or official audiovae.pth>\"")


class VAEChanged(FileNotFoundError):
    """The VAE a run was started with is gone or holds other weights now."""


def pinned_vae(cfg):
    """The run's VAE, and `vae.path` / `vae.fingerprint` set in `cfg` to exactly that one (an
    absolute file and a hash of its weights), so a resume encodes with the same VAE even after a
    newer `auto` candidate appears. A config that names a fingerprint must find those weights."""
    expected = OmegaConf.select(cfg, "vae.fingerprint")
    try:
        path = resolve_vae_path(cfg)
    except FileNotFoundError as err:
        if expected:
            raise VAEChanged(f"{err}; this run was started with the VAE of fingerprint {expected} (vae.fingerprint) "
                             "and continues only with it: restore that file") from None
        raise
    vae = load_audiovae(path)
    found = weights_fingerprint(vae)
    if expected and found != expected:
        raise VAEChanged(f"vae.path={path} now holds other weights (fingerprint {found}) than this run was started "
                         f"with ({expected}): its latents would differ. Restore that VAE, or start a new run")
    if vae.sample_rate != cfg.data.sample_rate:
        raise ValueError(f"the VAE works at {vae.sample_rate} Hz but data.sample_rate is {cfg.data.sample_rate}")
    cfg.vae.path, cfg.vae.fingerprint = str(Path(path).resolve()), found
    return vae


def read_splits(cfg) -> dict[str, list[Entry]]:
    """The train and val manifests, read and checked (with data.strict, a bad line fails here,
    before anything is encoded)."""
    d = cfg.data
    # every file is encoded up front, so its audio is checked up front too (data.validate=lazy or not)
    return {split: read_configured(d, d[f"{split}_manifest"], lazy_ok=False)[0] for split in SPLITS}


def ensure_caches(cfg, progress: bool = True, entries: dict[str, list[Entry]] | None = None,
                  vae=None) -> dict[str, Path]:
    """Latent cache folders for the train and val manifests, building what is missing."""
    entries = entries or read_splits(cfg)
    vae = vae or pinned_vae(cfg)
    return {split: build_cache(cfg.data[f"{split}_manifest"], vae, cfg.data.sample_rate, cfg.model.patch_size,
                               PROMPTS[split](cfg), progress=progress, entries=entries[split])
            for split in SPLITS}


SPLITS = ("train", "val")
PROMPTS = {"train": lambda cfg: float(cfg.data.prompt_prob) > 0, "val": lambda cfg: False}  # val: no prompts


def pair_prompts(speakers: list[str], prompt_prob: float, rng: random.Random) -> list[int | None]:
    """For each item, another item of the same speaker as its prompt with probability
    `prompt_prob` (None: no prompt; an empty speaker never gets one). TTSDataset draws it over a
    whole manifest, the shard stream over each window."""
    by_speaker = defaultdict(list)
    for i, spk in enumerate(speakers):
        by_speaker[spk].append(i)
    out: list[int | None] = []
    for i, spk in enumerate(speakers):
        others = [j for j in by_speaker[spk] if j != i] if spk else []
        out.append(rng.choice(others) if others and rng.random() < prompt_prob else None)
    return out


class TTSDataset(Dataset):
    def __init__(self, entries: list[Entry], store: LatentStore, tokenizer, patch_size: int,
                 prompt_prob: float = 0.0, seed: int = 0, phones=None, prompt_loss: bool = False):
        self.entries, self.store, self.tok, self.patch = entries, store, tokenizer, patch_size
        self.prompt_loss = prompt_loss
        self.phones = phones  # datamodules.corpus.phones.PhoneLabels for the phone loss, or None
        if hasattr(tokenizer, "warm"):  # a phoneme front end: the whole list through espeak at once
            tokenizer.warm([e.text for e in entries])
        self.text_ids = [tokenizer.encode(e.text) for e in entries]
        self.prompts = pair_prompts([e.speaker for e in entries], prompt_prob, random.Random(seed))
        needed = [(e, False) for e in entries] + [(entries[p], True) for p in self.prompts if p is not None]
        missing = [e.utt + (" (prompt form)" if prompt else "") for e, prompt in needed
                   if latent_name(e, prompt) not in store]
        if missing:
            raise KeyError(f"{len(missing)} utterances are not in the latent cache {store.folder} "
                           f"(first: {missing[:3]}); rebuild it with `make cache`")
        # an item with a reference audio: the reference is its prompt (drawn above all the same, so
        # that the other items' pairing does not depend on which lines have one)
        self.prompts = [None if e.ref_audio is not None else p for e, p in zip(entries, self.prompts)]
        missing = [e.utt for e in entries if e.ref_audio is not None and latent_name(e.ref_audio) not in store]
        if missing:
            raise KeyError(f"{len(missing)} reference audios are not in the latent cache {store.folder} "
                           f"(first for: {missing[:3]}); rebuild it with `make cache`")

    def __len__(self) -> int:
        return len(self.entries)

    def _patches(self, i: int, prompt: bool = False) -> int:
        return math.ceil(self.store[latent_name(self.entries[i], prompt)].shape[0] / self.patch)

    def lengths(self) -> list[int]:
        """Packed sequence positions per item (text + 101 + patches + 102), for the sampler."""
        out = []
        for i, p in enumerate(self.prompts):
            n = len(self.text_ids[i]) + self._patches(i) + 2
            if p is not None:
                n += len(self.text_ids[p]) + self._patches(p, prompt=True)
            ref = self.entries[i].ref_audio
            if ref is not None:  # + 103, the reference patches, 104
                n += 2 + math.ceil(self.store[latent_name(ref)].shape[0] / self.patch)
            out.append(n)
        return out

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        i = key[0] if isinstance(key, tuple) else key  # (index, epoch) from the training sampler
        p, e = self.prompts[i], self.entries[i]
        if e.ref_audio is not None:
            item = pack_with_reference(self.text_ids[i], self.store[latent_name(e)],
                                       self.store[latent_name(e.ref_audio)], patch_size=self.patch,
                                       audio_start_id=self.tok.audio_start_id, audio_end_id=self.tok.audio_end_id)
        else:
            item = pack_utterance(self.text_ids[i], self.store[latent_name(e)],
                                  None if p is None else self.text_ids[p],
                                  None if p is None else self.store[latent_name(self.entries[p], prompt=True)],
                                  patch_size=self.patch, audio_start_id=self.tok.audio_start_id,
                                  audio_end_id=self.tok.audio_end_id, prompt_loss=self.prompt_loss)
        item.update(utt=e.utt, text=e.text, speaker=e.speaker, lang=e.lang,
                    prompt_utt=None if p is None else self.entries[p].utt)
        if self.phones is not None and e.ref_audio is None:  # the phone of each target patch; -100 elsewhere
            target = item["loss_mask"] & (item["audio_mask"].cumsum(0) > item["audio_mask"].sum() - self._patches(i))
            item["phone_labels"] = torch.full(target.shape, NO_LABEL, dtype=torch.long)
            item["phone_labels"][target] = torch.tensor(self.phones(e.utt, int(target.sum())))
        return item


def collate_tts(items: list[dict]) -> dict:
    batch = collate_packed(items)
    for key in ("utt", "text", "speaker", "lang", "prompt_utt"):
        batch[key] = [it[key] for it in items]
    if any("phone_labels" in it for it in items):
        batch["phone_labels"] = torch.full(batch["loss_mask"].shape, NO_LABEL, dtype=torch.long)
        for i, it in enumerate(items):
            if "phone_labels" in it:
                batch["phone_labels"][i, :len(it["phone_labels"])] = it["phone_labels"]
    return batch


def unknown_characters(tokenizer, entries: list[Entry], manifest) -> str | None:
    """One warning naming each character of the texts that the tokenizer cannot write (it trains as
    <unk>, or is dropped: another script, a zero-width space, an emoji...), with the first line that
    holds it and how many texts are touched; None when every character is known."""
    import unicodedata

    first: dict[str, int] = {}
    for e in entries:  # NFC first, as the tokenizer reads the text
        for c in unicodedata.normalize("NFC", e.text):
            first.setdefault(c, e.line)
    lost = sorted((c for c in first if tokenizer.unknown(c)), key=first.get)
    if not lost:
        return None
    lost_set = set(lost)
    n_texts = sum(1 for e in entries if lost_set.intersection(unicodedata.normalize("NFC", e.text)))

    def named(c: str) -> str:  # an invisible one (zero-width, control, odd space) by its name too
        name = f" {unicodedata.name(c, 'unnamed')}" if unicodedata.category(c)[0] in "CZ" else ""
        return f"{c!r} U+{ord(c):04X}{name} (line {first[c]})"

    shown = ", ".join(named(c) for c in lost[:24])
    more = f" and {len(lost) - 24} more" if len(lost) > 24 else ""
    return (f"{manifest}: {n_texts} of {len(entries)} texts hold {len(lost)} characters outside the tokenizer's "
            f"vocabulary ({tokenizer.source}), which train as <unk> or are dropped: {shown}{more}")


class TTSDataModule(BudgetDataModule):
    """Reads `config.data` (manifests, frame budget in packed positions, prompt_prob), `config.text`
    (tokenizer), `config.vae` (which VAE's latents) and `config.model.patch_size`."""

    collate_fn = staticmethod(collate_tts)

    def validate(self) -> None:
        """Before the run folder is written: both manifests read and checked, the VAE loaded and
        pinned in the config (path + fingerprint), and a latent cache still to build writable."""
        self._entries, self._vae = read_splits(self.config), pinned_vae(self.config)
        fingerprint = vae_fingerprint(self._vae, self.cfg.sample_rate, self.config.model.patch_size)
        for split in SPLITS:
            check_writable(self.cfg[f"{split}_manifest"], self._entries[split], fingerprint, PROMPTS[split](self.config))

    def _validated(self) -> tuple[dict[str, list[Entry]], object]:
        if getattr(self, "_entries", None) is None:
            self.validate()
        return self._entries, self._vae

    def prepare_data(self) -> None:  # rank zero only: encode what is missing
        entries, vae = self._validated()
        ensure_caches(self.config, entries=entries, vae=vae)

    def setup(self, stage: str | None = None) -> None:
        entries, vae = self._validated()
        self.tokenizer = build_tokenizer(self.config.text)
        vocab = self.config.model.lm.vocab_size
        if self.tokenizer.vocab_size > vocab:
            raise ValueError(f"the tokenizer has {self.tokenizer.vocab_size} ids but model.lm.vocab_size is {vocab}")
        fingerprint = vae_fingerprint(vae, self.cfg.sample_rate, self.config.model.patch_size)
        for split in SPLITS:
            manifest = self.cfg[f"{split}_manifest"]
            store = LatentStore(cache_dir(manifest, fingerprint))
            unknown = unknown_characters(self.tokenizer, entries[split], manifest)
            if unknown:  # silently training on <unk> would hide a wrong tokenizer or dirty texts
                log.warning(unknown)
            prompts = PROMPTS[split](self.config)
            kept = [e for e in entries[split] if latent_name(e) in store
                    and (not prompts or latent_name(e, prompt=True) in store)
                    and (e.ref_audio is None or latent_name(e.ref_audio) in store)]  # its reference too
            if len(kept) < len(entries[split]):  # non-finite latents (named when they were encoded)
                log.warning(f"{manifest}: {len(entries[split]) - len(kept)} entries left out: not in the latent "
                            f"cache {store.folder} (their latents were non-finite)")
            prob = self.cfg.prompt_prob if split == "train" else 0.0
            phones = self._phone_labels(kept, vae.hop_length / vae.sample_rate) if split == "train" else None
            setattr(self, f"{split}_set", TTSDataset(kept, store, self.tokenizer, self.config.model.patch_size,
                                                     prob, int(self.config.seed), phones,
                                                     bool(self.cfg.get("prompt_loss", False))))

    def _phone_labels(self, entries: list[Entry], frame_seconds: float):
        """The phone loss's labels (`model.phones.classes` > 0): the embedded corpus's phone timings."""
        classes = int(OmegaConf.select(self.config, "model.phones.classes", default=0) or 0)
        if classes <= 0:
            return None

        labels = PhoneLabels(corpus_phones(self.cfg.root, entries), self.config.model.patch_size * frame_seconds)
        if len(labels.names) > classes:
            raise ValueError(f"model.phones.classes is {classes} but the corpus {self.cfg.root} speaks "
                             f"{len(labels.names)} phones: raise it")
        return labels


def main(argv: list[str] | None = None) -> int:
    """`make cache EXP=... SCALE=...`: encode the corpus with the experiment's VAE."""
    parser = argparse.ArgumentParser(description="Build the latent cache of an experiment's corpus.")
    parser.add_argument("--exp", default="d256s9")
    parser.add_argument("--scale", default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    try:
        cfg = compose(args.exp, args.scale, args.overrides)
        for split, folder in ensure_caches(cfg).items():
            print(f"[cache] {split}: {folder} ({len(LatentStore(folder).index)} latents)")
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except CacheInterrupted:  # build_cache said what was saved
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

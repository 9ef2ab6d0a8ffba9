"""The latent cache: the corpus encoded once by a chosen AudioVAE, read by backbone training.

Latents live beside the manifest in `latents/<key>/`, where the key hashes the VAE's weights
and the audio settings (sample rate, patch length), so a different VAE never reuses a stale
cache. Each folder holds shards (`shard_00000.pt`: name -> mu [frames, latent_dim] float32) and
`index.json` (name -> shard). Building is incremental: only names missing from the index are
encoded, and each shard is written whole (temporary file + rename) before the index names it.

A name is the audio itself, not the utterance id (`latent_name`): the file's path, size,
modification and change time, so two manifests' `0001.wav` never share latents and a file edited in place
is encoded again. One process at a time builds a folder (`<folder>/.lock`; a second one waits,
saying for whom); SIGTERM stops it after the batch being encoded, keeping what is done.
Latents that come out non-finite are not stored: their entries are named in a warning, and a
reader leaves out what is not in the cache.

Two forms of an utterance, so that training sees what the official code produces
(docs/design.md section 3):
- as a target: the waveform is right-padded with zero samples to whole patches before encoding,
  as the official training packer does, so no zero latent frame is produced;
- as a voice prompt (`latent_name(entry, prompt=True)`, only with `prompts=True`): left-padded
  with zero samples to whole patches before encoding, exactly as inference encodes a prompt wav,
  so the real audio ends right before the target.
"""
from __future__ import annotations

import hashlib
import json
import logging
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from datamodules.manifest import Entry, read_manifest
from voxlab.audio import file_stamp, load_audio
from voxlab.checkpoint import atomic_torch_save, load_checkpoint
from voxlab.safe_io import write_text_atomic
from voxlab.locks import FolderLock

PROMPT_SUFFIX = ":prompt"
log = logging.getLogger(__name__)


class CacheError(ValueError):
    """A latent cache folder that cannot be read as it is, named in the message."""


class CacheInterrupted(KeyboardInterrupt):
    """SIGTERM / Ctrl+C while encoding; what was encoded is saved (running again goes on)."""


def latent_name(entry: Entry, prompt: bool = False) -> str:
    """The cache name of an entry's audio as it is now: path and `file_stamp` (size, modification
    and change time)."""
    stamp = entry.stamp or file_stamp(entry.audio)  # no stamp: read without checking the audio
    name = hashlib.sha256(f"{Path(entry.audio).resolve()}|{stamp}".encode()).hexdigest()[:24]
    return name + PROMPT_SUFFIX if prompt else name


def weights_fingerprint(vae: torch.nn.Module) -> str:
    """A short hash of the VAE's weights alone: which VAE a run uses (vae.fingerprint)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def vae_fingerprint(vae: torch.nn.Module, sample_rate: int, patch_size: int = 1) -> str:
    """The cache folder's key: the VAE's weights, the audio settings (the patch sets the padding)
    and the naming scheme (by audio), so no older cache is read with other names."""
    settings = f"sr={sample_rate};hop={vae.hop_length};latent={vae.latent_dim};mu;patch={patch_size};names=audio"
    return hashlib.sha256(f"{settings};{weights_fingerprint(vae)}".encode()).hexdigest()[:16]


def cache_dir(manifest: str | Path, fingerprint: str) -> Path:
    return Path(manifest).resolve().parent / "latents" / fingerprint


def _todo(entries: list[Entry], index: dict, prompts: bool) -> list[tuple[Entry, bool]]:
    """(entry, prompt form) of what is not in the cache yet."""
    todo = [(e, False) for e in entries if latent_name(e) not in index]
    return todo + ([(e, True) for e in entries if latent_name(e, prompt=True) not in index] if prompts else [])


def reference_entries(entries: list[Entry]) -> list[Entry]:
    """Each distinct reference audio (the official manifest's `ref_audio`) of `entries`, once: the
    cache encodes them in the target form (right-padded to whole patches: the official packer
    encodes a reference as it encodes a target)."""
    seen: dict[str, Entry] = {}
    for e in entries:
        if e.ref_audio is not None:
            seen.setdefault(latent_name(e.ref_audio), e.ref_audio)
    return list(seen.values())


def check_writable(manifest: str | Path, entries: list[Entry], fingerprint: str, prompts: bool) -> None:
    """Before a run folder is made: a cache that still has entries to encode must be creatable and
    writable beside its manifest (a read-only data folder, `latents` a file), else CacheError. A
    complete cache is only read, so it may be read-only."""
    folder = cache_dir(manifest, fingerprint)
    entries = entries + reference_entries(entries)
    if folder.is_dir() and not _todo(entries, _read_index(folder), prompts):
        return
    probe = folder
    while not probe.exists() and not probe.is_symlink():
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(20, "not a folder", str(probe))
        tempfile.TemporaryFile(dir=probe).close()  # the real test: permissions, a read-only mount, quotas
    except OSError as err:
        raise CacheError(f"{folder}: the latent cache of {manifest} cannot be written ({probe}: {err.strerror or err});"
                         " it goes beside the manifest: copy the manifest and its audio to a writable folder, "
                         "or make that one writable") from None


def _read_index(folder: Path) -> dict[str, str]:
    path = folder / "index.json"
    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text())
        problem = None if isinstance(index, dict) else "not a mapping"
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        problem = str(err)
    if problem:  # cut short by a full disk or a partial copy: named, never a JSON traceback
        raise CacheError(f"{path}: the latent cache's index is damaged ({problem}); delete {folder} and run "
                         "`make cache` again")
    return index


@contextmanager
def _stop_requests():
    """Turns SIGTERM into a request checked between batches (the main thread only: elsewhere
    signals cannot be caught and the default applies)."""
    requests: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield requests
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: requests.append(signum))
    try:
        yield requests
    finally:
        signal.signal(signal.SIGTERM, previous)


@torch.inference_mode()
def build_cache(manifest: str | Path, vae: torch.nn.Module, sample_rate: int, patch_size: int = 1,
                prompts: bool = False, shard_size: int = 256, batch_frames: int = 16000 * 40,
                progress: bool = True, entries: list[Entry] | None = None) -> Path:
    """Encode every usable entry of `manifest` (or the `entries` already read from it) not yet in
    the cache, and its prompt form when `prompts`, padded to whole patches of `patch_size` frames.
    Returns the cache folder."""
    vae = vae.eval()
    fingerprint = vae_fingerprint(vae, sample_rate, patch_size)
    folder = cache_dir(manifest, fingerprint)
    if entries is None:
        entries, _ = read_manifest(manifest)
    check_writable(manifest, entries, fingerprint, prompts)  # a complete cache returns here unwritten
    entries = entries + reference_entries(entries)  # official `ref_audio`s, encoded as targets
    if folder.is_dir() and not _todo(entries, _read_index(folder), prompts):
        return folder  # complete: no lock needed (an index only grows), so a read-only cache works
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CacheError(f"{folder}: the latent cache of {manifest} cannot be created ({err.strerror or err})") from None
    with _stop_requests() as stop, FolderLock(folder, what="latent cache", wait=True):
        index = _read_index(folder)  # read under the lock: another build may have just added to it
        todo = _todo(entries, index, prompts)
        if not todo:
            return folder
        todo.sort(key=lambda item: item[0].duration)
        n_shards = len(set(index.values()))
        bar = tqdm(total=len(todo), desc=f"encoding {Path(manifest).name}", disable=not progress, unit="utt")
        patch_len = vae.hop_length * patch_size
        done = 0
        for start in range(0, len(todo), shard_size):
            shard: dict[str, torch.Tensor] = {}
            for batch in length_batches(todo[start:start + shard_size], sample_rate, batch_frames):
                for (entry, is_prompt), mu in zip(batch, encode_batch(batch, vae, sample_rate, patch_len)):
                    if torch.isfinite(mu).all():
                        shard[latent_name(entry, is_prompt)] = mu
                    else:
                        log.warning(f"{manifest}:{entry.line}: {entry.audio}: the VAE gave non-finite latents; "
                                    "not cached, so left out of training")
                bar.update(len(batch))
                done += len(batch)
                if stop:
                    break
            if shard:
                name = f"shard_{n_shards:05d}.pt"
                atomic_torch_save(shard, folder / name)
                n_shards += 1
                index.update({key: name for key in shard})
                write_text_atomic(folder / "index.json", json.dumps(index))
            if stop:  # said here: Lightning reports an interrupt in prepare_data only as a KeyboardInterrupt
                message = (f"latent cache building stopped by SIGTERM after {done} of {len(todo)} items of "
                           f"{manifest} (saved in {folder}); running again goes on from there")
                print(f"[cache] {message}", file=sys.stderr)
                raise CacheInterrupted(message)
        bar.close()
    return folder


def length_batches(items: list[tuple[Entry, bool]], sample_rate: int, budget: int):
    """`items` (sorted by duration) in consecutive batches of at most `budget` padded samples."""
    batch: list[tuple[Entry, bool]] = []
    for item in items:  # sorted by duration: the last one is the longest
        if batch and (len(batch) + 1) * item[0].duration * sample_rate > budget:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def encode_batch(items: list[tuple[Entry, bool]], vae, sample_rate: int, patch_len: int) -> list[torch.Tensor]:
    """Each wav padded to whole patches (prompts on the left, targets on the right), then the
    batch zero-padded at the end. The VAE is causal, so zeros at the end leave the earlier frames
    unchanged: a padded batch gives each item exactly the latents it would get alone."""
    wavs = []
    for entry, is_prompt in items:
        wav = torch.from_numpy(load_audio(entry.audio, sample_rate))
        pad = -len(wav) % patch_len
        wavs.append(F.pad(wav, (pad, 0) if is_prompt else (0, pad)))
    batch = torch.zeros(len(wavs), 1, max(len(w) for w in wavs))
    for i, w in enumerate(wavs):
        batch[i, 0, : len(w)] = w
    device = next(vae.parameters()).device
    mu = vae.encode(batch.to(device)).float().cpu()  # [B, D, frames]
    hop = vae.hop_length
    return [mu[i, :, : len(w) // hop].T.contiguous() for i, w in enumerate(wavs)]


class LatentStore:
    """name (`latent_name`) -> latents [frames, D], read from a cache folder (all shards loaded
    lazily, once)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.index = _read_index(self.folder)
        if not self.index:
            raise FileNotFoundError(f"{self.folder}: empty latent cache (run `make cache`)")
        self._shards: dict[str, dict[str, torch.Tensor]] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.index

    def __getitem__(self, name: str) -> torch.Tensor:
        shard = self.index[name]
        if shard not in self._shards:
            self._shards[shard] = load_checkpoint(self.folder / shard)
        return self._shards[shard][name]

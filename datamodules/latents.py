"""The latent cache: the corpus encoded once by a chosen AudioVAE, read by backbone training.

Latents live beside the manifest in `latents/<key>/`, where the key hashes the VAE's weights
and the audio settings, so a different VAE (or sample rate) never reuses a stale cache. Each
folder holds shards (`shard_00000.pt`: utt -> mu [frames, latent_dim] float32) and `index.json`
(utt -> shard). Building is incremental: only utterances missing from the index are encoded,
and each shard is written whole (temporary file + rename) before the index names it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from tqdm import tqdm

from datamodules.manifest import Entry, read_manifest
from voxlab.audio import load_audio
from voxlab.checkpoint import atomic_torch_save, load_checkpoint


def vae_fingerprint(vae: torch.nn.Module, sample_rate: int) -> str:
    """A short hash of the VAE's weights and the audio settings."""
    digest = hashlib.sha256()
    digest.update(f"sr={sample_rate};hop={vae.hop_length};latent={vae.latent_dim};mu".encode())
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_dir(manifest: str | Path, fingerprint: str) -> Path:
    return Path(manifest).resolve().parent / "latents" / fingerprint


def _read_index(folder: Path) -> dict[str, str]:
    path = folder / "index.json"
    return json.loads(path.read_text()) if path.is_file() else {}


@torch.inference_mode()
def build_cache(manifest: str | Path, vae: torch.nn.Module, sample_rate: int, shard_size: int = 256,
                batch_frames: int = 16000 * 40, progress: bool = True) -> Path:
    """Encode every usable entry of `manifest` not yet in the cache. Returns the cache folder."""
    vae = vae.eval()
    folder = cache_dir(manifest, vae_fingerprint(vae, sample_rate))
    folder.mkdir(parents=True, exist_ok=True)
    index = _read_index(folder)
    entries, _ = read_manifest(manifest)
    todo = [e for e in entries if e.utt not in index]
    if not todo:
        return folder
    todo.sort(key=lambda e: e.duration)
    n_shards = len({s for s in index.values()})
    bar = tqdm(total=len(todo), desc=f"encoding {Path(manifest).name}", disable=not progress, unit="utt")
    for start in range(0, len(todo), shard_size):
        shard: dict[str, torch.Tensor] = {}
        group = todo[start:start + shard_size]
        for batch in _length_batches(group, sample_rate, batch_frames):
            shard.update(_encode(batch, vae, sample_rate))
            bar.update(len(batch))
        name = f"shard_{n_shards:05d}.pt"
        atomic_torch_save(shard, folder / name)
        n_shards += 1
        index.update({utt: name for utt in shard})
        tmp = folder / "index.json.tmp"
        tmp.write_text(json.dumps(index))
        tmp.replace(folder / "index.json")
    bar.close()
    return folder


def _length_batches(entries: list[Entry], sample_rate: int, budget: int):
    batch: list[Entry] = []
    for entry in entries:  # sorted by duration: the last one is the longest
        if batch and (len(batch) + 1) * entry.duration * sample_rate > budget:
            yield batch
            batch = []
        batch.append(entry)
    if batch:
        yield batch


def _encode(entries: list[Entry], vae, sample_rate: int) -> dict[str, torch.Tensor]:
    """The VAE is causal, so zero padding at the end leaves the earlier frames unchanged:
    a padded batch gives each utterance exactly its own latents."""
    wavs = [torch.from_numpy(load_audio(e.audio, sample_rate)) for e in entries]
    longest = max(len(w) for w in wavs)
    batch = torch.zeros(len(wavs), 1, longest)
    for i, w in enumerate(wavs):
        batch[i, 0, : len(w)] = w
    device = next(vae.parameters()).device
    mu = vae.encode(batch.to(device)).float().cpu()  # [B, D, frames]
    hop = vae.hop_length
    return {e.utt: mu[i, :, : -(-len(w) // hop)].T.contiguous() for i, (e, w) in enumerate(zip(entries, wavs))}


class LatentStore:
    """utt -> latents [frames, D], read from a cache folder (all shards loaded lazily, once)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.index = _read_index(self.folder)
        if not self.index:
            raise FileNotFoundError(f"{self.folder}: empty latent cache (run `make cache`)")
        self._shards: dict[str, dict[str, torch.Tensor]] = {}

    def __contains__(self, utt: str) -> bool:
        return utt in self.index

    def __getitem__(self, utt: str) -> torch.Tensor:
        name = self.index[utt]
        if name not in self._shards:
            self._shards[name] = load_checkpoint(self.folder / name)
        return self._shards[name][utt]

"""The latent cache: the corpus encoded once by a chosen AudioVAE, read by backbone training.

Latents live beside the manifest in `latents/<key>/`, where the key hashes the VAE's weights
and the audio settings (sample rate, patch length), so a different VAE never reuses a stale
cache. Each folder holds shards (`shard_00000.pt`: name -> mu [frames, latent_dim] float32) and
`index.json` (name -> shard). Building is incremental: only names missing from the index are
encoded, and each shard is written whole (temporary file + rename) before the index names it.

Two forms of an utterance, so that training sees what the official code produces
(docs/design.md section 3):
- as a target (name = utt): the waveform is right-padded with zero samples to whole patches
  before encoding, as the official training packer does, so no zero latent frame is produced;
- as a voice prompt (name = `prompt_name(utt)`, only with `prompts=True`): left-padded with zero
  samples to whole patches before encoding, exactly as inference encodes a prompt wav, so the
  real audio ends right before the target.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from datamodules.manifest import Entry, read_manifest
from voxlab.audio import load_audio
from voxlab.checkpoint import atomic_torch_save, load_checkpoint


PROMPT_SUFFIX = "\x1fprompt"  # a control character: never part of a manifest id


def prompt_name(utt: str) -> str:
    """The cache name of an utterance's prompt form."""
    return utt + PROMPT_SUFFIX


def vae_fingerprint(vae: torch.nn.Module, sample_rate: int, patch_size: int = 1) -> str:
    """A short hash of the VAE's weights and the audio settings (the patch sets the padding)."""
    digest = hashlib.sha256()
    digest.update(f"sr={sample_rate};hop={vae.hop_length};latent={vae.latent_dim};mu".encode())
    if patch_size != 1:
        digest.update(f";patch={patch_size}".encode())
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
def build_cache(manifest: str | Path, vae: torch.nn.Module, sample_rate: int, patch_size: int = 1,
                prompts: bool = False, shard_size: int = 256, batch_frames: int = 16000 * 40,
                progress: bool = True) -> Path:
    """Encode every usable entry of `manifest` not yet in the cache (and its prompt form when
    `prompts`), padded to whole patches of `patch_size` frames. Returns the cache folder."""
    vae = vae.eval()
    folder = cache_dir(manifest, vae_fingerprint(vae, sample_rate, patch_size))
    folder.mkdir(parents=True, exist_ok=True)
    index = _read_index(folder)
    entries, _ = read_manifest(manifest)
    todo = [(e, False) for e in entries if e.utt not in index]
    if prompts:
        todo += [(e, True) for e in entries if prompt_name(e.utt) not in index]
    if not todo:
        return folder
    todo.sort(key=lambda item: item[0].duration)
    n_shards = len({s for s in index.values()})
    bar = tqdm(total=len(todo), desc=f"encoding {Path(manifest).name}", disable=not progress, unit="utt")
    patch_len = vae.hop_length * patch_size
    for start in range(0, len(todo), shard_size):
        shard: dict[str, torch.Tensor] = {}
        group = todo[start:start + shard_size]
        for batch in _length_batches(group, sample_rate, batch_frames):
            shard.update(_encode(batch, vae, sample_rate, patch_len))
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


def _length_batches(items: list[tuple[Entry, bool]], sample_rate: int, budget: int):
    batch: list[tuple[Entry, bool]] = []
    for item in items:  # sorted by duration: the last one is the longest
        if batch and (len(batch) + 1) * item[0].duration * sample_rate > budget:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def _encode(items: list[tuple[Entry, bool]], vae, sample_rate: int, patch_len: int) -> dict[str, torch.Tensor]:
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
    return {(prompt_name(e.utt) if is_prompt else e.utt): mu[i, :, : len(w) // hop].T.contiguous()
            for i, ((e, is_prompt), w) in enumerate(zip(items, wavs))}


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

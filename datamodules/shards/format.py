"""The shard format: WebDataset-style tar files plus one small description of the set.

A shard `shard-00000.tar` holds samples as consecutive members sharing a key (the sample's
number in its shard): `000000.json` (utt, text, duration, speaker, lang, `index` = its line in
the source manifest's usable entries, and what the other members are), then `000000.flac`
(the audio file's own bytes, any format soundfile reads) and/or `000000.latent` /
`000000.prompt_latent` (raw little-endian latents [frames, D], dtype and shape in the JSON).
Every shard is written whole (temporary name, then renamed) and followed by its sidecar
`shard-00000.json` (count, bytes, seconds): a shard is done when its sidecar exists, so a build
can be interrupted and resumed, and shards can be written by many processes at once.
`shards.json` lists the shards (name, count, seconds) and what they hold; it is written once all
sidecars exist. Readers load `shards.json` only: nothing per utterance is held in memory.
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr
import torch

from voxlab.audio import AudioError
from voxlab.safe_io import atomic_path

FORMAT = "voxlab-shards/1"
INDEX = "shards.json"
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ShardError(ValueError):
    pass


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.tar"


def write_shard(path: Path, samples: list[dict[str, bytes]]) -> dict:
    """Write `samples` (extension -> bytes, one dict per sample) as one tar, whole; returns its stats."""
    with atomic_path(path) as tmp, tarfile.open(tmp, "w") as tar:  # several writers never share a temporary
        for n, sample in enumerate(samples):
            for ext, data in sample.items():
                info = tarfile.TarInfo(f"{n:06d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return {"name": path.name, "count": len(samples), "bytes": path.stat().st_size}


def read_shard(path: Path, skip: int = 0) -> Iterator[dict[str, bytes]]:
    """The samples of one shard in order (extension -> bytes), the first `skip` passed over without
    reading their data (the tar is seeked over, not decoded)."""
    sample, key, seen = {}, None, 0
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                k, _, ext = member.name.partition(".")
                if k != key:
                    if sample:
                        yield sample
                    sample, key, seen = {}, k, seen + 1
                if seen > skip:
                    sample[ext] = tar.extractfile(member).read()
            if sample:
                yield sample
    except tarfile.TarError as err:
        raise ShardError(f"{path}: not a readable shard ({err})") from None


def meta_of(sample: dict[str, bytes]) -> dict:
    return json.loads(sample["json"])


def latent_of(sample: dict[str, bytes], meta: dict, name: str = "latent") -> torch.Tensor:
    """The float32 latents [frames, D] stored under `name` (latent or prompt_latent)."""
    spec = meta[name]
    data = torch.frombuffer(bytearray(sample[name]), dtype=TORCH_DTYPES[spec["dtype"]])
    return data.reshape(spec["shape"]).float()


def latent_bytes(latent: torch.Tensor, dtype: str) -> tuple[bytes, dict]:
    t = latent.to(TORCH_DTYPES[dtype]).contiguous()
    return t.view(torch.uint8).numpy().tobytes(), {"dtype": dtype, "shape": list(t.shape)}


def decode_audio(data: bytes, sample_rate: int, where: str) -> np.ndarray:
    """Audio file bytes -> float32 mono at `sample_rate`, as `voxlab.audio.load_audio` reads a file."""
    try:
        wav, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as err:
        raise AudioError(f"{where}: cannot read audio ({err})") from None
    if wav.shape[1] != 1:
        raise AudioError(f"{where}: {wav.shape[1]} channels, expected mono")
    wav = wav[:, 0]
    if sr != sample_rate:
        wav = soxr.resample(wav, sr, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(wav)


def read_index(folder: str | Path) -> dict:
    """`shards.json` of a shard folder, checked: a clear error when it is not a finished set."""
    folder = Path(folder)
    path = folder / INDEX
    if not path.is_file():
        done = len(list(folder.glob("shard-*.json"))) if folder.is_dir() else 0
        hint = f" ({done} shards written: the build is unfinished, re-run it)" if done else " (run `make shards`)"
        raise ShardError(f"{path}: no shard set here{hint}")
    try:
        index = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ShardError(f"{path}: damaged (truncated or not JSON: {err}); run `make shards` again") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        found = index.get("format") if isinstance(index, dict) else type(index).__name__
        raise ShardError(f"{path}: format {found!r}, expected {FORMAT!r}")
    for shard in index.get("shards", []):  # a shard cut short (a full disk, a partial copy) says so here
        file = folder / shard["name"]
        size = file.stat().st_size if file.is_file() else None
        if size != shard.get("bytes", size):
            state = "missing" if size is None else f"{size} bytes, {INDEX} records {shard['bytes']}"
            raise ShardError(f"{file}: {state} (truncated or replaced); run `make shards` again")
    return index

"""Audio frontend without torchaudio: reading, resampling, writing, and the one mel spectrogram.

`MelSpectrogram` matches torchaudio's MelSpectrogram (same defaults: HTK mel scale, no filter
norm, centred reflect-padded STFT), computed with torch.stft and librosa's filters so it runs on
any device and is differentiable. Every mel in the project comes from here.
"""
from __future__ import annotations

import os
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import soxr
import torch
from torch import nn

from voxlab.safe_io import atomic_path


class AudioError(ValueError):
    """An audio file that cannot be used, named in the message."""


def load_audio(path: str | Path, sample_rate: int, mono: str = "error") -> np.ndarray:
    """Read `path` as float32 at `sample_rate`. `mono`: "error" refuses several channels,
    "mix" averages them."""
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError, OSError...
        raise AudioError(f"{path}: cannot read audio ({err})") from None
    if wav.shape[1] > 1:
        if mono == "error":
            raise AudioError(f"{path}: {wav.shape[1]} channels, expected mono")
        wav = wav.mean(axis=1, keepdims=True)
    wav = wav[:, 0]
    if wav.size == 0:
        raise AudioError(f"{path}: empty audio")
    if sr != sample_rate:
        wav = soxr.resample(wav, sr, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(wav)


# Above this a float recording is no recording (a gain or a unit error): 12 dB over full scale.
MAX_PEAK = 4.0


def sample_problem(wav: np.ndarray | torch.Tensor) -> str | None:
    """Why these samples are unusable (NaN/inf, an absurd peak), or None when they are fine."""
    wav = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    bad = int((~np.isfinite(wav)).sum())
    if bad:
        return f"{bad} non-finite samples (NaN/inf) of {wav.size}"
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak > MAX_PEAK:
        return f"peak {peak:.3g} is over {MAX_PEAK:g} (full scale is 1)"
    return None


def save_audio(path: str | Path, wav: np.ndarray | torch.Tensor, sample_rate: int) -> Path:
    """Write a mono 16-bit PCM wav, written to a temporary name first so a crash leaves no torn file."""
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().float().cpu().numpy()
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)

    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return Path(path)


def peak_normalize(wav: np.ndarray, peak: float = 0.95) -> np.ndarray:
    top = float(np.abs(wav).max()) if wav.size else 0.0
    return wav * (peak / top) if top > 0 else wav


class MelSpectrogram(nn.Module):
    """[B, T] or [B, 1, T] waveform -> [B, n_mels, frames] (power or magnitude, optionally log)."""

    def __init__(self, sample_rate: int = 16000, n_fft: int = 1024, hop_length: int = 256,
                 win_length: int | None = None, n_mels: int = 80, f_min: float = 0.0,
                 f_max: float | None = None, power: float = 1.0, log: bool = True,
                 center: bool = True, norm: str | None = None, mel_scale: str = "htk",
                 log_floor: float = 1e-5):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.win_length = win_length or n_fft
        self.power, self.log, self.center, self.log_floor = power, log, center, log_floor
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min,
                                 fmax=f_max, htk=mel_scale == "htk", norm=norm)
        self.register_buffer("mel_basis", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() == 3:
            wav = wav.squeeze(1)
        spec = torch.stft(wav.float(), self.n_fft, self.hop_length, self.win_length, self.window,
                          center=self.center, pad_mode="reflect", return_complex=True)
        # sqrt(re^2 + im^2 + eps) where a gradient flows: |0| has a NaN gradient (silent output)
        mag = spec.abs() if not wav.requires_grad else (spec.real.square() + spec.imag.square() + 1e-16).sqrt()
        if self.power != 1.0:
            mag = mag.pow(self.power)
        mel = torch.matmul(self.mel_basis, mag)
        return torch.log(mel.clamp(min=self.log_floor)) if self.log else mel


def file_stamp(path: str | Path) -> str:
    """"<bytes>:<mtime ns>:<ctime ns>" of a file: what tells an edited audio file from the one that was
    read. The change time is the kernel's: writing the file or setting its mtime back moves it, so a
    file rewritten in place with the same size and an old mtime is told apart (the same stat call)."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"

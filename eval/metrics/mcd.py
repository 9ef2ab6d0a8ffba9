"""Mel-cepstral distortion after DTW alignment: a reference-based distance for generated speech
when a ground-truth rendering of the same sentence by the same voice exists (the embedded
corpus is deterministic, so it does).

Cepstra are the DCT-II of the natural-log mel magnitude spectrum (floor 1e-4, i.e. -80 dB) (c1..c{n}, c0 = energy excluded), from the
project's one mel implementation; frames are aligned with DTW (Euclidean cost) and
MCD = 10 / ln 10 * sqrt(2 * sum_k (c_k - c'_k)^2), averaged over the aligned path, in dB.
"""
from __future__ import annotations

import math

import librosa
import numpy as np
import scipy.fft
import torch

from voxlab.audio import MelSpectrogram

_MEL = None


def cepstra(wav: np.ndarray, sample_rate: int = 16000, n_ceps: int = 13) -> np.ndarray:
    """[frames, n_ceps] mel cepstra (c1..c13) of a mono waveform."""
    global _MEL
    if _MEL is None:
        _MEL = MelSpectrogram(sample_rate, n_fft=1024, hop_length=160, win_length=400, n_mels=40,
                              power=1.0, log=True, log_floor=1e-4)
    with torch.no_grad():
        logmel = _MEL(torch.as_tensor(wav, dtype=torch.float32)[None])[0].numpy()  # [mels, frames]
    # 1/N scaling: the real-cepstrum convention, so values land in the usual few-dB range.
    ceps = scipy.fft.dct(logmel, type=2, axis=0)[1:n_ceps + 1] / (2 * logmel.shape[0])
    return ceps.T


def mcd(reference: np.ndarray, generated: np.ndarray, sample_rate: int = 16000) -> float:
    """MCD in dB between two waveforms, frames aligned by DTW."""
    a, b = cepstra(reference, sample_rate), cepstra(generated, sample_rate)
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    _, path = librosa.sequence.dtw(X=a.T, Y=b.T, metric="euclidean")
    diff = a[path[:, 0]] - b[path[:, 1]]
    return float(10.0 / math.log(10.0) * np.mean(np.sqrt(2.0 * np.sum(diff ** 2, axis=1))))

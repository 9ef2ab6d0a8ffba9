"""Codec metrics of a reconstruction against its original: wideband PESQ (ITU-T P.862.2, 1 to 4.64)
and STOI (0 to 1), through torchmetrics' audio metrics (the `pesq` and `pystoi` packages).

Both are undefined for some inputs: PESQ needs at least 0.25 s and finds no utterance in silence,
STOI needs about 30 frames of speech (0.4 s) after its silence removal. Those give None, never a
made-up number, so a mean is taken over the defined values only.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

PESQ_RATE = 16000  # wideband PESQ is defined at 16 kHz
PESQ_MIN_SECONDS = 0.25


def _as_tensor(wav, sr: int) -> torch.Tensor:
    x = np.asarray(wav.detach().cpu() if isinstance(wav, torch.Tensor) else wav, dtype=np.float64).reshape(-1)
    if sr != PESQ_RATE:
        import soxr
        x = soxr.resample(x, sr, PESQ_RATE)
    return torch.from_numpy(x)


def pesq_wb(reconstruction, original, sr: int) -> float | None:
    from pesq import PesqError
    from torchmetrics.functional.audio import perceptual_evaluation_speech_quality

    deg, ref = _as_tensor(reconstruction, sr), _as_tensor(original, sr)
    if ref.numel() < PESQ_MIN_SECONDS * PESQ_RATE or not torch.any(deg != 0):
        return None
    try:
        return float(perceptual_evaluation_speech_quality(deg, ref, PESQ_RATE, "wb"))
    except PesqError:  # no utterance found in the reference
        return None


def stoi(reconstruction, original, sr: int) -> float | None:
    from torchmetrics.functional.audio import short_time_objective_intelligibility

    deg, ref = _as_tensor(reconstruction, sr), _as_tensor(original, sr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(short_time_objective_intelligibility(deg, ref, PESQ_RATE))
    # pystoi warns and returns 1e-5 when too little speech is left after its silence removal
    return None if any("Not enough STFT frames" in str(w.message) for w in caught) else value


def codec_scores(reconstruction, original, sr: int) -> dict[str, float | None]:
    return {"pesq_wb": pesq_wb(reconstruction, original, sr), "stoi": stoi(reconstruction, original, sr)}

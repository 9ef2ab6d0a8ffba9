"""Speaker-similarity backends: cosine of speaker embeddings of generated vs prompt audio at 16 kHz.

Each backend has `name`, `embed(wav16k) -> 1-D torch.Tensor` and `info() -> dict`. Scores of
different speaker models are not comparable with each other: every output names the model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SIM_CHOICES = ("none", "resemblyzer", "wavlm_ecapa", "wespeaker")


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))

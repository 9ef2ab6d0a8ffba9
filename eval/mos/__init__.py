"""MOS predictors: a predicted mean opinion score of each generated utterance, 16 kHz, no reference.

Each backend has `name`, `score(wav16k) -> dict` (its headline value under "mos", other components
beside it) and `info() -> dict` naming the model. Predictors measure different things and their
scores are not comparable with each other: every output names the model (as for SIM).
"""
from __future__ import annotations

MOS_CHOICES = ("none", "dnsmos", "utmos")

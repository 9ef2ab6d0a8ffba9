"""Learning-rate schedules as multipliers of the base rate, by optimizer step."""
from __future__ import annotations

import math


def wsd(step: int, total: int, warmup: float, decay: float, min_ratio: float = 0.0) -> float:
    """Warmup-stable-decay: linear warm-up over the first `warmup` fraction of `total` steps, flat,
    then a linear decay to `min_ratio` over the last `decay` fraction."""
    warm_steps, decay_steps = int(total * warmup), int(total * decay)
    if warm_steps and step < warm_steps:
        return (step + 1) / warm_steps
    decay_start = total - decay_steps
    if decay_steps and step >= decay_start:
        frac = min(1.0, (step - decay_start) / decay_steps)
        return 1.0 - (1.0 - min_ratio) * frac
    return 1.0


def cosine(step: int, total: int, warmup: float, min_ratio: float = 0.0) -> float:
    """Linear warm-up, then a cosine from 1 to `min_ratio` at `total`."""
    warm_steps = int(total * warmup)
    if warm_steps and step < warm_steps:
        return (step + 1) / warm_steps
    frac = min(1.0, (step - warm_steps) / max(1, total - warm_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))


def lr_lambda(name: str, total: int, warmup: float, decay: float, min_ratio: float):
    if name == "wsd":
        return lambda s: wsd(s, total, warmup, decay, min_ratio)
    if name == "cosine":
        return lambda s: cosine(s, total, warmup, min_ratio)
    if name == "constant":
        return lambda s: 1.0
    raise ValueError(f"optim.schedule.name must be wsd, cosine or constant, got {name!r}")

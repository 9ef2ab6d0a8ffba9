"""Learning-rate schedules as multipliers of the base rate, by optimizer step: one implementation
for every trainer here (the TTS module, the AudioVAE module, the tiny text LM's pre-training).

A schedule is a linear warm-up times a decay:
- `constant`: 1;
- `exponential`: gamma ** step;
- `linear`: 1 until `decay_start`, then linearly to `min_ratio` over `decay_steps`;
- `cosine`: 1 until `decay_start`, then a half cosine to `min_ratio` over `decay_steps`.
`wsd` (warmup-stable-decay) is the linear decay over the last `decay` share of the run.
"""
from __future__ import annotations

import math
from typing import Callable

DECAYS = ("constant", "exponential", "linear", "cosine")


def multiplier(step: int, warmup_steps: int = 0, decay: str = "constant", decay_start: int = 0,
               decay_steps: int = 0, min_ratio: float = 0.0, gamma: float = 1.0) -> float:
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if decay == "exponential":
        return warm * gamma ** step
    if decay in ("linear", "cosine") and decay_steps > 0:
        frac = min(1.0, max(0.0, (step - decay_start) / decay_steps))
        shape = frac if decay == "linear" else 0.5 * (1.0 - math.cos(math.pi * frac))
        return warm * (1.0 - (1.0 - min_ratio) * shape)
    if decay not in DECAYS:
        raise ValueError(f"unknown decay {decay!r}; expected one of {', '.join(DECAYS)}")
    return warm


def lr_lambda(**kw) -> Callable[[int], float]:
    """`multiplier` with its settings bound, for torch.optim.lr_scheduler.LambdaLR (checked now)."""
    multiplier(0, **kw)
    return lambda step: multiplier(step, **kw)


def by_shares(name: str, total: int, warmup: float, decay: float, min_ratio: float) -> Callable[[int], float]:
    """The TTS `optim.schedule` (wsd | cosine | constant), its warm-up and decay given as shares of
    `total` steps: cosine decays from the end of the warm-up to `total`, wsd over the last `decay`."""
    warm_steps = int(total * warmup)
    if name == "wsd":
        decay_steps = int(total * decay)
        return lr_lambda(warmup_steps=warm_steps, decay="linear", decay_start=total - decay_steps,
                         decay_steps=decay_steps, min_ratio=min_ratio)
    if name == "cosine":
        return lr_lambda(warmup_steps=warm_steps, decay="cosine", decay_start=warm_steps,
                         decay_steps=max(1, total - warm_steps), min_ratio=min_ratio)
    if name == "constant":
        return lr_lambda()
    raise ValueError(f"optim.schedule.name must be wsd, cosine or constant, got {name!r}")

"""The one schedule implementation (lightning_modules.schedules) gives, step for step, what the
three it replaced gave: the TTS module's wsd and cosine (warm-up and decay as shares of the run),
the AudioVAE's warm-up times exponential decay, the tiny LM's warm-up times a cosine over the run.
The formulas below are frozen copies of the replaced code (commit 64bc651)."""
import math

import pytest

from lightning_modules.schedules import by_shares, lr_lambda


def old_wsd(step, total, warmup, decay, min_ratio):
    warm_steps, decay_steps = int(total * warmup), int(total * decay)
    if warm_steps and step < warm_steps:
        return (step + 1) / warm_steps
    decay_start = total - decay_steps
    if decay_steps and step >= decay_start:
        return 1.0 - (1.0 - min_ratio) * min(1.0, (step - decay_start) / decay_steps)
    return 1.0


def old_cosine(step, total, warmup, min_ratio):
    warm_steps = int(total * warmup)
    if warm_steps and step < warm_steps:
        return (step + 1) / warm_steps
    frac = min(1.0, (step - warm_steps) / max(1, total - warm_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))


@pytest.mark.parametrize("total,warmup,decay,min_ratio", [(200, 0.01, 0.1, 0.0), (57, 0.1, 0.3, 0.2), (10, 0.0, 0.0, 0.0)])
def test_tts_schedules_match_the_replaced_ones(total, warmup, decay, min_ratio):
    wsd, cos = by_shares("wsd", total, warmup, decay, min_ratio), by_shares("cosine", total, warmup, decay, min_ratio)
    for step in range(total + 5):
        assert wsd(step) == pytest.approx(old_wsd(step, total, warmup, decay, min_ratio), abs=1e-12)
        assert cos(step) == pytest.approx(old_cosine(step, total, warmup, min_ratio), abs=1e-12)
    assert by_shares("constant", total, warmup, decay, min_ratio)(total) == 1.0
    with pytest.raises(ValueError, match="wsd, cosine or constant"):
        by_shares("linear", total, warmup, decay, min_ratio)


def test_lm_and_vae_schedules_match_the_replaced_ones():
    steps = 300
    lm = lr_lambda(warmup_steps=50, decay="cosine", decay_start=0, decay_steps=steps)
    vae = lr_lambda(warmup_steps=7, decay="exponential", gamma=0.99)
    for s in range(steps + 3):
        assert lm(s) == pytest.approx(min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)),
                                      abs=1e-12)
        assert vae(s) == pytest.approx(min(1.0, (s + 1) / 7) * 0.99 ** s, abs=1e-12)
    with pytest.raises(ValueError, match="unknown decay"):
        lr_lambda(decay="step")

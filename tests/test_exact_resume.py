"""Exact resume: N steps in one go equal N/2 steps, stop, resume N/2 steps (losses at every step
and final weights), because the sampler position and every RNG state are in the checkpoint."""
import csv

import torch

from conftest import tts_overrides
from voxlab.checkpoint import load_checkpoint
from voxlab.train import train

STEPS = 6


def _losses(run):
    rows = csv.DictReader(open(run / "csv" / "metrics.csv"))
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


def test_tts_resume_is_exact(tts_assets):
    root, corpus, vae_dir = tts_assets
    common = tts_overrides(root, corpus, vae_dir, STEPS) + [
        "trainer.log_every_n_steps=1", "trainer.val_check_interval=1000", "data.frame_budget=300",
        "data.prompt_prob=0.5"]
    straight = train("d256s9", "tiny", common)
    half = train("d256s9", "tiny", common + [f"trainer.max_steps={STEPS // 2}"])
    train(None, resume=str(half), overrides=[f"trainer.max_steps={STEPS}"])
    a, b = _losses(straight), _losses(half)
    assert sorted(a) == sorted(b) == list(range(STEPS)), (a, b)  # the epoch is longer than STEPS batches
    diff = max(abs(a[s] - b[s]) for s in a)
    print(f"max loss difference over {STEPS} steps: {diff:.3g}")
    assert diff <= 1e-6
    wa = load_checkpoint(straight / "checkpoints" / "last.ckpt")["state_dict"]
    wb = load_checkpoint(half / "checkpoints" / "last.ckpt")["state_dict"]
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-6

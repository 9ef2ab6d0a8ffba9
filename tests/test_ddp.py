"""Distributed training on Lightning's engine: 2 CPU processes (gloo) for a few steps; rank zero
alone owns the run folder; the frame-budget sampler shards the data across the ranks."""
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import tts_overrides
from voxlab.checkpoint import load_checkpoint


@pytest.mark.slow
def test_tts_trains_with_ddp_on_two_processes(tts_assets):
    root, corpus, vae_dir = tts_assets
    args = tts_overrides(root, corpus, vae_dir, steps=3) + [
        "trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "run.root=" + str(root / "ddp_runs")]
    start = time.time()
    out = subprocess.run([sys.executable, "-m", "voxlab.cli.train", "--exp", "d256s9", "--scale", "tiny", *args],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.time() - start
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = sorted((root / "ddp_runs" / "d256s9").iterdir())
    assert [r.name for r in runs] == ["version_0"]  # both ranks used rank zero's run folder
    run = runs[0]
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 3
    print(f"DDP (2 CPU processes, 3 steps) wall time: {wall:.1f} s")


@pytest.mark.slow
def test_audiovae_trains_with_ddp_on_two_processes(tts_assets):
    """The GAN module (manual optimisation, two optimizers) under DDP, mel-only warm-up steps and
    adversarial steps both. The discriminator is unused in a warm-up step (and frozen in the
    generator's backward), so DDP must look for unused parameters:
    `trainer.strategy=ddp_find_unused_parameters_true` (plain `ddp` fails at the second step)."""
    from test_exact_resume import vae_overrides

    root, corpus, _ = tts_assets
    args = vae_overrides(root, corpus, steps=3, runs="ddp_vae_runs") + [
        "trainer.strategy=ddp_find_unused_parameters_true", "trainer.devices=2", "trainer.accelerator=cpu"]
    start = time.time()
    out = subprocess.run([sys.executable, "-m", "voxlab.cli.train", "--exp", "audiovae", "--scale", "tiny", *args],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.time() - start
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = sorted((root / "ddp_vae_runs" / "audiovae").iterdir())
    assert [r.name for r in runs] == ["version_0"]
    run = runs[0]
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["generator_step"] == 3
    assert ckpt["global_step"] == 2 * 3 - 2  # warm-up steps 1-2 are generator-only, step 3 adversarial
    print(f"DDP AudioVAE (2 CPU processes, 3 generator steps) wall time: {wall:.1f} s")

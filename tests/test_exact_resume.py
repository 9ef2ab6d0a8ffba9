"""Exact resume: N steps in one go equal N/2 steps, stop, resume N/2 steps (losses at every step
and final weights), because the sampler position and every RNG state are in the checkpoint."""
import csv

import torch

from conftest import tts_overrides
from voxlab.checkpoint import load_checkpoint
from voxlab.cli.train import train

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


# A tiny AudioVAE and discriminator; the warm-up makes the first steps mel-only and the rest
# adversarial (both optimizers), so both kinds of step are checked across the resume point. Four
# items per batch: the 6 steps cross an epoch boundary after the resume (the GAN stops its runs via
# `should_stop`, which Lightning follows with a validation and an epoch increment).
VAE_STEPS = 6


def vae_overrides(root, corpus, steps=VAE_STEPS, runs="vae_runs"):
    return [f"data.root={corpus}", f"run.root={root / runs}", f"trainer.max_steps={steps}",
            "trainer.log_every_n_steps=1", "trainer.val_check_interval=1000", "trainer.limit_val_batches=1",
            "run.checkpoint_every_steps=1000", "data.crop_seconds=0.4", "data.frame_budget=25600",
            "module.warmup_steps=2", "model.decoder=waveform", "module.lambdas.adv/gen_loss=1.0", "module.lambdas.adv/feat_loss=2.0", "model.encoder_dim=4", "model.decoder_dim=16",
            "discriminator.periods=[2,3]", "discriminator.period_channels=[4,8]",
            "discriminator.stft_resolutions=[[256,64]]", "discriminator.stft_channels=4",
            "module.mel_loss.window_lengths=[64,256]", "module.mel_loss.n_mels=[10,40]",
            "module.stft_resolutions=[[512,128]]", "module.val_mel.n_fft=512", "module.val_mel.hop_length=128",
            "module.val_mel.n_mels=40", "callbacks.audio_logging=null"]


def _vae_losses(run):
    """Generator step -> (generator loss, discriminator loss or NaN in a mel-only step)."""
    rows = csv.DictReader(open(run / "csv" / "metrics.csv"))
    return {int(float(r["train/generator_step"])): (float(r["train/loss"]), float(r["train/adv/disc_loss"] or "nan"))
            for r in rows if r.get("train/loss")}


def test_audiovae_resume_is_exact(tts_assets):
    root, corpus, _ = tts_assets
    common = vae_overrides(root, corpus)
    straight = train("audiovae", "tiny", common)
    half = train("audiovae", "tiny", common + [f"trainer.max_steps={VAE_STEPS // 2}"])
    train(None, resume=str(half), overrides=[f"trainer.max_steps={VAE_STEPS}"])
    a, b = _vae_losses(straight), _vae_losses(half)
    assert sorted(a) == sorted(b) == list(range(1, VAE_STEPS + 1)), (a, b)
    adversarial = [s for s in a if a[s][1] == a[s][1]]  # steps with a (non-NaN) discriminator loss
    assert adversarial and len(adversarial) < VAE_STEPS, a  # both mel-only and adversarial steps ran
    assert all((a[s][1] == a[s][1]) == (b[s][1] == b[s][1]) for s in a), (a, b)  # same mel-only steps
    diff = max(abs(x - y) for s in a for x, y in zip(a[s], b[s]) if x == x)
    print(f"AudioVAE: max loss difference over {VAE_STEPS} generator steps: {diff:.3g}")
    assert diff <= 1e-6
    ca = load_checkpoint(straight / "checkpoints" / "last.ckpt")
    cb = load_checkpoint(half / "checkpoints" / "last.ckpt")
    assert ca["generator_step"] == cb["generator_step"] == VAE_STEPS
    wa, wb = ca["state_dict"], cb["state_dict"]
    assert sorted(wa) == sorted(wb)
    wdiff = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)
    print(f"AudioVAE: max final weight difference: {wdiff:.3g}")
    assert wdiff <= 1e-6

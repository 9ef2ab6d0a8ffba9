"""Backbone training through the real entry point: every ablation (and VoxCPM2) trains two steps at tiny scale
on a small embedded corpus, with the latent cache built first and checkpoints self-contained, and
the two steps really update the weights."""
import pytest
import torch

from conftest import tts_overrides
from lightning_modules.tts import TTSModule
from voxlab.checkpoint import load_checkpoint
from voxlab.config import available_experiments
from voxlab.cli.train import train
from voxlab.runs import last_checkpoint

# the paper's ablation rows, and the VoxCPM2 architecture (experiments/tts/v2/, its own sizes at release scale)
ABLATIONS = sorted(e for e, p in available_experiments().items() if p.parent.name == "tts") + ["voxcpm2"]


@pytest.mark.parametrize("exp", ABLATIONS)
def test_every_ablation_trains_two_steps(exp, tts_assets, monkeypatch):
    """global_step counts a step whose non-finite gradients were dropped (nonfinite.policy=skip),
    and finite weights hold for an untouched model: this fails when every batch is skipped, or when
    the optimizer never applies an update (a zero learning rate, gradients cleared before the step)."""
    root, corpus, vae_dir = tts_assets
    start = {}

    def keep_start(module):  # the weights training starts from, once the optimizer is built
        start.update({n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad})

    monkeypatch.setattr(TTSModule, "on_train_start", keep_start, raising=False)
    run = train(exp, "tiny", tts_overrides(root, corpus, vae_dir))
    ckpt = load_checkpoint(last_checkpoint(run))
    assert ckpt["global_step"] == 2 and ckpt["nonfinite_skips"] == 0
    moved = [n for n, w in start.items() if not torch.equal(ckpt["state_dict"][n], w)]
    assert start and len(moved) == len(start), sorted(set(start) - set(moved))
    assert ckpt["voxlab_config"]["experiment"] == exp
    assert ckpt["voxlab_vae"]["config"]["encoder_dim"] == 4 and ckpt["voxlab_vae"]["state_dict"]
    assert ckpt["voxlab_tokenizer"]["kind"] == "char" and len(ckpt["voxlab_tokenizer"]["chars"]) > 20
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert (corpus / "latents").is_dir()  # the cache was built before training

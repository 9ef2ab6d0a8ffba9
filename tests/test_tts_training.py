"""Backbone training through the real entry point: every ablation trains two steps at tiny scale
on a small embedded corpus, with the latent cache built first and checkpoints self-contained."""
import pytest
import torch

from conftest import tts_overrides
from voxlab.checkpoint import load_checkpoint
from voxlab.config import available_experiments
from voxlab.cli.train import train

ABLATIONS = sorted(e for e, p in available_experiments().items() if p.parent.name == "tts")


@pytest.mark.parametrize("exp", ABLATIONS)
def test_every_ablation_trains_two_steps(exp, tts_assets):
    root, corpus, vae_dir = tts_assets
    run = train(exp, "tiny", tts_overrides(root, corpus, vae_dir))
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 2
    assert ckpt["voxlab_config"]["experiment"] == exp
    assert ckpt["voxlab_vae"]["config"]["encoder_dim"] == 4 and ckpt["voxlab_vae"]["state_dict"]
    assert ckpt["voxlab_tokenizer"]["kind"] == "char" and len(ckpt["voxlab_tokenizer"]["chars"]) > 20
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert (corpus / "latents").is_dir()  # the cache was built before training

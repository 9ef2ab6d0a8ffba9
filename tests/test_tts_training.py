"""Backbone training through the real entry point: every ablation trains two steps at tiny scale
on a small embedded corpus, with the latent cache built first and checkpoints self-contained."""
import pytest
import torch

from datamodules.corpus import build_corpus
from models.audiovae import AudioVAE
from models.weights import export_audiovae
from voxlab.checkpoint import load_checkpoint
from voxlab.config import available_experiments
from voxlab.train import train

ABLATIONS = sorted(e for e, p in available_experiments().items() if p.parent.name == "tts")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("tts")
    corpus = build_corpus(root / "corpus", seed=0, num_utts=24, workers=1, lm_size=200, progress=False)
    torch.manual_seed(0)
    vae_dir = export_audiovae(AudioVAE(encoder_dim=4, decoder_dim=16, sample_rate=16000), root / "vae")
    return root, corpus, vae_dir


def _overrides(root, corpus, vae_dir):
    return [f"data.root={corpus}", f"vae.path={vae_dir}", f"run.root={root / 'runs'}",
            "model.lm_init.mode=none", "trainer.max_steps=2", "trainer.val_check_interval=2",
            "trainer.limit_val_batches=1", "data.frame_budget=600",
            "run.checkpoint_every_steps=1000"]


@pytest.mark.parametrize("exp", ABLATIONS)
def test_every_ablation_trains_two_steps(exp, assets):
    root, corpus, vae_dir = assets
    run = train(exp, "tiny", _overrides(root, corpus, vae_dir))
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 2
    assert ckpt["voxlab_config"]["experiment"] == exp
    assert ckpt["voxlab_vae"]["config"]["encoder_dim"] == 4 and ckpt["voxlab_vae"]["state_dict"]
    assert ckpt["voxlab_tokenizer"]["kind"] == "char" and len(ckpt["voxlab_tokenizer"]["chars"]) > 20
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert (corpus / "latents").is_dir()  # the cache was built before training

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# the test fixtures' own `_target_`s, allowed as a user would allow theirs (voxlab/config.py)
os.environ.setdefault("VOXLAB_ALLOW_TARGETS", "tests.helpers.toy_module,torch.nn.Linear")


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def tts_assets(tmp_path_factory):
    """A small embedded corpus and a tiny random VAE export: (root, corpus folder, VAE folder)."""
    import torch

    from datamodules.corpus import build_corpus
    from models.audiovae import AudioVAE
    from models.weights import export_audiovae

    root = tmp_path_factory.mktemp("tts")
    corpus = build_corpus(root / "corpus", seed=0, num_utts=24, workers=1, lm_size=200, progress=False)
    torch.manual_seed(0)
    vae_dir = export_audiovae(AudioVAE(encoder_dim=4, decoder_dim=16, sample_rate=16000), root / "vae")
    return root, corpus, vae_dir


def tts_overrides(root, corpus, vae_dir, steps=2):
    return [f"data.root={corpus}", f"vae.path={vae_dir}", f"run.root={root / 'runs'}",
            "model.lm_init.mode=none", f"trainer.max_steps={steps}", "trainer.val_check_interval=2",
            "trainer.limit_val_batches=1", "data.frame_budget=600", "run.checkpoint_every_steps=1000"]

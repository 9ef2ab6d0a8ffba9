"""The demo's plumbing (the whole demo is `make demo`, minutes long): its backbone settings are a
valid config with the evaluation callback on, a finished run is reused only when it was trained
with the same settings, and the shipped tiny VAE is in the repository and loads."""
from pathlib import Path

from voxlab.cli import demo
from voxlab.config import compose


def test_backbone_overrides_compose_with_the_evaluation_callback_on():
    cfg = compose("d256s9", "tiny", demo.tts_overrides(Path("some/vae"), 120, 40, "/models/paraformer"))
    cb = cfg.callbacks.seedtts_eval
    assert cb._target_ == "callbacks.evaluation.SeedTTSEvalCallback"
    assert cb.every_n_steps == 40 and cb.limit == 8 and cb.paraformer == "/models/paraformer"
    assert cfg.trainer.max_steps == 120 and cfg.vae.path == "some/vae"
    off = compose("d256s9", "tiny", demo.tts_overrides(Path("v"), None, 0, None))
    assert off.callbacks.seedtts_eval._target_ is None


def test_a_finished_run_is_reused_only_with_the_same_settings(tmp_path, monkeypatch):
    from voxlab.runs import write_status
    from voxlab.config import to_yaml

    monkeypatch.setattr(demo, "RUNS", str(tmp_path))
    run = tmp_path / "d256s9" / "version_0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(to_yaml(compose("d256s9", "tiny", ["trainer.max_steps=7"])))
    write_status(run, "finished")
    assert demo._finished_run("d256s9", "tiny", ["trainer.max_steps=7"]) == run
    assert demo._finished_run("d256s9", "tiny", ["trainer.max_steps=8"]) is None
    assert demo._finished_run("d256s9", "paper", ["trainer.max_steps=7"]) is None


def test_the_shipped_tiny_vae_loads_and_keeps_the_hop():
    import torch

    from models import load_audiovae

    vae = load_audiovae(str(demo.SHIPPED_VAE))
    assert vae.hop_length == 640 and vae.latent_dim == 64
    z = vae.encode(torch.zeros(1, 1, 6400))
    assert z.shape == (1, 64, 10)

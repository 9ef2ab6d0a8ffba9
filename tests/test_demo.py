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
    assert cfg.text.kind == "phoneme" and cfg.model.audio_positions == 1.5 and cfg.model.align.heads == 1
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


def test_the_references_are_the_ground_truth_and_its_vae_resynthesis(tts_assets, tmp_path):
    """The floor and the ceiling the demo prints beside the model: the ground-truth wav written as
    it is, and the same wav through the VAE (encode, decode) at its own length."""
    from eval.generate import reference_generate_fn
    from eval.testset import read_testset
    from voxlab.audio import load_audio

    _, corpus, vae_dir = tts_assets
    items = read_testset(corpus / "seedtts" / "en" / "meta.lst")[:2]
    reference_generate_fn(None)(items, tmp_path / "gt")
    reference_generate_fn(vae_dir)(items, tmp_path / "vae")
    for item in items:
        truth = load_audio(item.gt_wav, 16000)
        copied, resynth = load_audio(tmp_path / "gt" / f"{item.utt}.wav", 16000), load_audio(tmp_path / "vae" / f"{item.utt}.wav", 16000)
        assert abs(copied - truth).max() < 1e-4  # 16-bit PCM rounding only
        assert len(resynth) == len(truth) and abs(resynth - truth).max() > 1e-3  # a random VAE changes it
    # the cosine the demo prints for the resynthesis: 1 for the ground truth itself, lower for a random VAE's
    from voxlab.cli.demo import _cosine_to_original

    meta = tmp_path / "meta.lst"
    meta.write_text("".join(f"{it.utt}|{it.prompt_text}|{it.prompt_wav}|{it.target_text}|{it.gt_wav}\n" for it in items))
    assert _cosine_to_original(meta, tmp_path / "gt") > 0.999
    assert _cosine_to_original(meta, tmp_path / "vae") < 0.99

"""Run folders written before issue 13's restructuring (tests/data/runs_64bc651, commit 64bc651)
still load: the TTS checkpoint as a model (weights, VAE and tokenizer as saved), the AudioVAE
checkpoint as a VAE, every `_target_` of their saved configs resolves, and the
saved configs still validate against today's schema (so `make train RESUME=...` accepts them)."""
from pathlib import Path

import torch
from omegaconf import OmegaConf

from voxlab.config import load_run_config, locate

RUNS = Path(__file__).parent / "data" / "runs_64bc651"
TTS_RUN, VAE_RUN = RUNS / "d256s9" / "version_0", RUNS / "audiovae" / "version_0"


def _saved(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def _targets(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["_target_"]] if isinstance(node.get("_target_"), str) else []
        return found + [t for v in node.values() for t in _targets(v)]
    return [t for v in node for t in _targets(v)] if isinstance(node, list) else []


def test_old_tts_run_loads_as_saved():
    from models import load

    saved = _saved(TTS_RUN)
    model = load(TTS_RUN, optimize=False)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, saved["state_dict"][f"model.{key}"]), key
    for key, value in model.vae.state_dict().items():
        assert torch.equal(value, saved["voxlab_vae"]["state_dict"][key]), key
    assert model.tokenizer.chars == saved["voxlab_tokenizer"]["chars"]
    wav, sample_rate = model.generate("hello", max_len=3, timesteps=2, seed=0)  # cut by the cap: warns
    assert sample_rate == 16000 and wav.numel() > 0 and torch.isfinite(wav).all()


def test_old_audiovae_run_loads_its_weights():
    from models import load_audiovae

    saved = _saved(VAE_RUN)
    assert not any(k.startswith("vae_ema.") for k in saved["state_dict"])  # the tiny recipe has no EMA
    vae = load_audiovae(VAE_RUN)
    assert vae.config() == {k: v for k, v in saved["voxlab_config"]["model"].items() if k != "_target_"}
    for key, value in vae.state_dict().items():
        assert torch.equal(value, saved["state_dict"][f"vae.{key}"]), key
    audio = torch.zeros(1, 1, 1600)
    assert vae(audio, sample=False)["audio"].shape[-1] >= 1600


def test_old_targets_resolve_and_configs_validate():
    from voxlab.cli.train import check_saved_config

    for run in (TTS_RUN, VAE_RUN):
        config = _saved(run)["voxlab_config"]
        targets = _targets(config)
        assert "models.voxcpm.VoxCPMBackbone" in targets or "models.audiovae.AudioVAE" in targets
        for target in targets:
            assert callable(locate(target)), target
        check_saved_config(config, run / "checkpoints" / "last.ckpt")
        check_saved_config(OmegaConf.to_container(load_run_config(run)), run / "config.yaml")


def test_moved_targets_are_followed(monkeypatch):
    from lightning_modules.tts import TTSModule
    from voxlab import config

    monkeypatch.setitem(config.MOVED_TARGETS, "lightning_modules.old_tts.TTSModule", "lightning_modules.tts.TTSModule")
    assert locate("lightning_modules.old_tts.TTSModule") is TTSModule

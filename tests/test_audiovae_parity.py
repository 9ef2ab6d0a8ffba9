"""Parity with the official `voxcpm` AudioVAE: same keys, same outputs, weights both ways."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
import types

import pytest
import torch

from models import export_audiovae, load_audiovae
from models.audiovae import AudioVAE
from models.weights import infer_audiovae_config, load_strict
from voxlab.config import compose, instantiate



@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these ops are small, and two OpenMP threads on a busy 2-core machine
    were measured 5-20x slower than one."""
    torch.set_num_threads(1)
    yield
if importlib.util.find_spec("voxcpm") is None:
    pytest.skip("voxcpm==2.0.3 (installed with --no-deps) is needed for parity", allow_module_level=True)


def _official():
    """The official module. The voxcpm package imports torchaudio at import time; an absent
    module gets an empty stand-in (only code paths that never touch it are used here)."""
    for name in ("torchaudio",):
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            stub = types.ModuleType(name)
            stub.__spec__ = importlib.machinery.ModuleSpec(name, None)
            sys.modules[name] = stub
    from voxcpm.modules.audiovae import AudioVAE as OfficialVAE, AudioVAEConfig
    return OfficialVAE, AudioVAEConfig


SMALL = dict(encoder_dim=8, encoder_rates=[2, 5, 8, 8], latent_dim=16, decoder_dim=64,
             decoder_rates=[8, 8, 5, 2], depthwise=True, sample_rate=16000, use_noise_block=False)


def _random_official(config: dict, seed: int = 0):
    OfficialVAE, AudioVAEConfig = _official()
    torch.manual_seed(seed)
    model = OfficialVAE(AudioVAEConfig(**config)).eval()
    with torch.no_grad():  # move every parameter off its init: g != ||v||, alpha != 1, bias != 0
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _assert_same(official, ours, n_samples: int = 2 * 640 * 3 + 123):
    torch.manual_seed(1)
    wav = torch.randn(2, 1, n_samples) * 0.2
    with torch.no_grad():
        mu_off, mu_ours = official.encode(wav, 16000), ours.encode(wav, 16000)
        assert mu_off.shape == mu_ours.shape
        assert torch.allclose(mu_off, mu_ours, atol=1e-5, rtol=0), (mu_off - mu_ours).abs().max()
        z = mu_off + 0.1 * torch.randn_like(mu_off)
        out_off, out_ours = official.decode(z), ours.decode(z)
        assert out_off.shape == out_ours.shape == (2, 1, z.shape[-1] * 640)
        assert torch.allclose(out_off, out_ours, atol=1e-5, rtol=0), (out_off - out_ours).abs().max()


@pytest.mark.parametrize("depthwise", [True, False])
def test_official_weights_load_strict_and_match(depthwise):
    config = dict(SMALL, depthwise=depthwise)
    official = _random_official(config)
    ours = AudioVAE(**config).eval()
    state = official.state_dict()
    assert any(k.endswith(".weight_g") for k in state)  # the legacy weight-norm layout
    load_strict(ours, state, "official state dict")
    _assert_same(official, ours)


def test_our_export_loads_into_the_official_model(tmp_path):
    ours = AudioVAE(**SMALL)
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ours.eval()
    export_audiovae(ours, tmp_path)
    OfficialVAE, AudioVAEConfig = _official()
    official = OfficialVAE(AudioVAEConfig(**json.loads((tmp_path / "audiovae_config.json").read_text()))).eval()
    # as the official loader reads it: torch.load(weights_only=True), then .get("state_dict", ...)
    ckpt = torch.load(tmp_path / "audiovae.pth", map_location="cpu", weights_only=True)
    result = official.load_state_dict(ckpt.get("state_dict", ckpt), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    _assert_same(official, ours)


def test_official_model_folder_loads(tmp_path):
    """An official model folder: config.json with audio_vae_config, audiovae.pth under "state_dict"."""
    official = _random_official(SMALL, seed=3)
    torch.save({"state_dict": official.state_dict()}, tmp_path / "audiovae.pth")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "voxcpm", "audio_vae_config": SMALL}))
    _assert_same(official, load_audiovae(tmp_path))


def test_paper_config_has_the_official_default_layout():
    """Our `paper` size builds exactly the official default (VoxCPM-0.5B 16 kHz) parameter set."""
    OfficialVAE, AudioVAEConfig = _official()
    official = OfficialVAE(AudioVAEConfig()).state_dict()
    ours = instantiate(compose("audiovae", "paper").model).state_dict()
    assert {k: tuple(v.shape) for k, v in official.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    assert infer_audiovae_config(official) == AudioVAEConfig().model_dump()  # a bare release file


# Official files of other sizes, saved bare (no config beside): the architecture comes from the weights.
OTHER_SIZES = {
    "wide24_72": dict(encoder_dim=24, decoder_dim=72),  # 72 does not halve evenly 4 times
    "plain_noise": dict(encoder_dim=4, encoder_rates=[2, 4, 5], latent_dim=12, decoder_dim=40, decoder_rates=[5, 4, 2],
                        depthwise=False, use_noise_block=True),
    "odd_rates": dict(encoder_dim=6, encoder_rates=[3, 5], latent_dim=14, decoder_dim=30, decoder_rates=[5, 3]),
}


@pytest.mark.parametrize("name", list(OTHER_SIZES))
def test_bare_official_file_of_another_size_loads_by_inference(tmp_path, name, capsys):
    official = _random_official(OTHER_SIZES[name], seed=5)
    torch.save({"state_dict": official.state_dict()}, tmp_path / "audiovae.pth")
    ours = load_audiovae(tmp_path / "audiovae.pth")
    assert "inferred from the weights" in capsys.readouterr().err
    assert ours.config() == _official()[1](**OTHER_SIZES[name]).model_dump()  # every field, 16 kHz taken
    hop = official.hop_length
    torch.manual_seed(1)
    wav = torch.randn(2, 1, hop * 7 + 5) * 0.2
    with torch.no_grad():
        mu_off, mu_ours = official.encode(wav, 16000), ours.encode(wav, 16000)
        assert mu_off.shape == mu_ours.shape and (mu_off - mu_ours).abs().max() <= 1e-5
        z = mu_off + 0.1 * torch.randn_like(mu_off)
        torch.manual_seed(2)  # the noise block draws the same noise in both
        out_off = official.decode(z)
        torch.manual_seed(2)
        out_ours = ours.decode(z)
        assert out_off.shape == out_ours.shape == (2, 1, z.shape[-1] * hop)
        assert (out_off - out_ours).abs().max() <= 1e-5


def test_config_beside_the_file_wins_and_is_named(tmp_path, capsys):
    """A config.json's audio_vae_config is used (and named) where present: the sample rate is only there."""
    config = dict(OTHER_SIZES["odd_rates"], latent_dim=10, sample_rate=24000)
    official = _random_official(config, seed=6)
    torch.save(official.state_dict(), tmp_path / "audiovae.pth")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "voxcpm", "audio_vae_config": config}))
    ours = load_audiovae(tmp_path / "audiovae.pth")
    assert "config.json (audio_vae_config)" in capsys.readouterr().err
    assert ours.sample_rate == 24000 and ours.latent_dim == 10
    with torch.no_grad():
        x = torch.randn(1, 1, 300) * 0.2
        assert (official.encode(x, 24000) - ours.encode(x, 24000)).abs().max() <= 1e-5

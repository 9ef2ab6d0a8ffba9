"""AudioVAE network, discriminators, loss terms and weight files (plain PyTorch, CPU)."""
from __future__ import annotations

import json

import pytest
import torch

from models import export_audiovae, load_audiovae
from models.audiovae import AudioVAE
from models.discriminators import Discriminator
from models.losses import (MultiResolutionSTFTLoss, MultiScaleMelLoss, discriminator_loss,
                           feature_matching_loss, generator_adversarial_loss, kl_loss, weighted_total)
from models.weights import WeightsError, load_strict, read_state_dict
from voxlab.checkpoint import CheckpointError
from voxlab.config import compose, instantiate



@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these ops are small, and two OpenMP threads on a busy 2-core machine
    were measured 5-20x slower than one."""
    torch.set_num_threads(1)
    yield
SMALL = dict(encoder_dim=4, encoder_rates=[2, 5, 8, 8], latent_dim=64, decoder_dim=32,
             decoder_rates=[8, 8, 5, 2], depthwise=True)


class Payload:
    """An arbitrary object: pickling it needs code, which weights_only loading refuses."""


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights away from their init (g != ||v||, alpha != 1) so comparisons are meaningful."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def test_shapes_and_hop_padding():
    vae = AudioVAE(**SMALL).eval()
    assert vae.hop_length == 640 and vae.latent_dim == 64
    wav = torch.randn(2, 1, 3 * 640 + 17) * 0.1
    mu = vae.encode(wav)
    assert mu.shape == (2, 64, 4)  # right-padded to a multiple of the hop, like the official code
    assert torch.equal(vae.encode(wav[:, 0]), mu)  # [B, T] is accepted too
    out = vae.decode(mu)
    assert out.shape == (2, 1, 4 * 640)
    assert out.abs().max() <= 1.0  # tanh output
    mu2, logvar = vae.encode_posterior(wav)
    assert torch.equal(mu2, mu) and logvar.shape == mu.shape
    with pytest.raises(ValueError, match="16000 Hz"):
        vae.encode(wav, sample_rate=22050)
    with pytest.raises(ValueError, match="same product"):
        AudioVAE(encoder_rates=[2, 5], decoder_rates=[5, 4])


def test_inference_path_equals_the_training_path_and_follows_weight_changes():
    """Without autograd the weight-normed weights are cached, 1x1 convs run as matrix products and
    Snake works in place: the same outputs as with autograd, also after the weights change."""
    vae = _randomize(AudioVAE(**SMALL))
    wav, z = torch.randn(2, 1, 4 * 640) * 0.1, torch.randn(2, 64, 4)

    def both():
        with torch.enable_grad():
            ref = vae.encode(wav).detach(), vae.decode(z).detach()
        with torch.inference_mode():
            fast = vae.encode(wav), vae.decode(z)
        for a, b in zip(ref, fast):
            assert (a - b).abs().max() <= 1e-6
        return fast

    first = both()
    with torch.no_grad():  # an optimizer step or load_state_dict changes the parameters in place
        for p in vae.parameters():
            p.add_(0.05 * torch.randn_like(p))
    second = both()
    assert (first[1] - second[1]).abs().max() > 1e-3  # the cache did not serve stale weights
    vae.load_state_dict(_randomize(AudioVAE(**SMALL), seed=3).state_dict())
    both()


def test_configured_sizes():
    from models.weights import build_audiovae

    tiny = build_audiovae(compose("audiovae", "tiny").model, "tiny")
    paper = compose("audiovae", "paper").model
    assert compose("audiovae").model == paper  # the experiment's defaults are the paper sizes
    n_tiny = sum(p.numel() for p in tiny.parameters())
    assert 3_000_000 < n_tiny < 6_000_000, n_tiny  # the shipped tiny recipe: 4.9 M, the iSTFT decoder
    assert tiny.hop_length == 640 and tiny.latent_dim == 64 and tiny.decoder_kind == "istft"
    waveform = build_audiovae(compose("audiovae", "tiny", ["model.decoder=waveform"]).model, "tiny waveform")
    assert 100_000 < sum(p.numel() for p in waveform.parameters()) < 3_000_000  # 1.7 M (dense convs)
    assert (paper.encoder_dim, list(paper.encoder_rates), paper.latent_dim, paper.decoder_dim,
            list(paper.decoder_rates), paper.depthwise) == (128, [2, 5, 8, 8], 64, 1536, [8, 8, 5, 2], True)


def test_training_forward_samples_the_posterior():
    vae = AudioVAE(**SMALL)
    wav = torch.randn(1, 1, 1280) * 0.1
    torch.manual_seed(0)
    a = vae(wav)
    torch.manual_seed(1)
    b = vae(wav)
    assert not torch.equal(a["z"], b["z"]) and torch.equal(a["mu"], b["mu"])
    assert torch.equal(vae(wav, sample=False)["z"], a["mu"])


def test_encoder_is_causal():
    vae = _randomize(AudioVAE(**SMALL))
    k = 3  # perturb from sample 3*hop onwards: latent frames 0..2 must not move
    x = torch.randn(1, 1, 6 * 640) * 0.1
    y = x.clone()
    y[..., k * 640:] += torch.randn(1, 1, 3 * 640) * 0.1
    with torch.no_grad():
        mx, my = vae.encode(x), vae.encode(y)
    assert torch.equal(mx[..., :k], my[..., :k])
    assert not torch.allclose(mx[..., k:], my[..., k:])  # the perturbation does reach later frames


def test_decoder_is_causal():
    vae = _randomize(AudioVAE(**SMALL))
    k = 2
    z = torch.randn(1, 64, 5)
    z2 = z.clone()
    z2[..., k:] += torch.randn(1, 64, 3)
    with torch.no_grad():
        a, b = vae.decode(z), vae.decode(z2)
    assert torch.equal(a[..., : k * 640], b[..., : k * 640])
    assert not torch.allclose(a[..., k * 640:], b[..., k * 640:])


def test_discriminators_return_feature_lists_with_logits_last():
    d = Discriminator(periods=[2, 3, 5, 7, 11], period_channels=[4, 8, 8],
                      stft_resolutions=[[512, 128], [256, 64]], stft_channels=4)
    outs = d(torch.randn(2, 1, 4001))  # length not a multiple of any period
    assert len(outs) == 5 + 2
    for feats in outs:
        assert len(feats) >= 2 and feats[-1].shape[1] == 1 and feats[-1].shape[0] == 2
    assert len(outs[0]) == 3 + 1  # one map per conv, then the logits
    only_mpd = Discriminator(periods=[2, 3], period_channels=[4], stft_resolutions=[])
    assert len(only_mpd(torch.randn(1, 1, 1000))) == 2
    with pytest.raises(ValueError):
        Discriminator(periods=[], stft_resolutions=[])


def test_loss_terms_finite_and_behave():
    torch.manual_seed(0)
    real = torch.randn(2, 1, 4000) * 0.1
    fake = (real + 0.05 * torch.randn_like(real)).requires_grad_()
    mel = MultiScaleMelLoss(16000, window_lengths=[64, 256, 1024], n_mels=[10, 40, 80])
    stft = MultiResolutionSTFTLoss([[512, 128], [256, 64]])
    assert mel(real, real).item() == 0.0 and stft(real, real).item() < 1e-6
    m, s = mel(fake, real), stft(fake, real)
    assert m.item() > 0 and s.item() > 0 and torch.isfinite(m) and torch.isfinite(s)
    m.backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
    mu, logvar = torch.zeros(2, 64, 3), torch.zeros(2, 64, 3)
    assert kl_loss(mu, logvar).item() == 0.0
    assert kl_loss(mu + 1, logvar).item() == pytest.approx(0.5)

    d = Discriminator(periods=[2, 3], period_channels=[4, 8], stft_resolutions=[[256, 64]], stft_channels=4)
    r, f = d(real), d(fake)
    for kind in ("lsgan", "hinge"):
        assert torch.isfinite(discriminator_loss(r, f, kind)) and torch.isfinite(generator_adversarial_loss(f, kind))
    with pytest.raises(ValueError, match="lsgan"):
        discriminator_loss(r, f, "wgan")
    assert feature_matching_loss(r, r).item() == 0.0 and feature_matching_loss(r, f).item() > 0
    # LSGAN: a perfect discriminator (real -> 1, fake -> 0) has zero loss
    ones, zeros = [[torch.ones(2, 1, 5)]], [[torch.zeros(2, 1, 5)]]
    assert discriminator_loss(ones, zeros).item() == 0.0 and generator_adversarial_loss(zeros).item() == 1.0

    terms = {"mel/loss": torch.tensor(2.0), "kl/loss": torch.tensor(3.0), "adv/gen_loss": torch.tensor(5.0)}
    total = weighted_total(terms, {"mel/loss": 10.0, "kl/loss": 0.5, "adv/feat_loss": 2.0})
    assert total.item() == pytest.approx(21.5)  # absent term ignored, unweighted term not summed
    with pytest.raises(ValueError, match="non-zero weight"):
        weighted_total(terms, {})


def test_export_and_load_round_trip(tmp_path):
    vae = _randomize(AudioVAE(**SMALL))
    export_audiovae(vae, tmp_path / "export")
    assert json.loads((tmp_path / "export" / "audiovae_config.json").read_text())["decoder_dim"] == 32
    raw = torch.load(tmp_path / "export" / "audiovae.pth", weights_only=True)
    assert any(k.endswith("weight_g") for k in raw["state_dict"])  # official weight-norm layout
    for source in (tmp_path / "export", tmp_path / "export" / "audiovae.pth"):
        loaded = load_audiovae(source)
        x = torch.randn(1, 1, 1920) * 0.1
        with torch.no_grad():
            assert torch.equal(loaded.encode(x), vae.encode(x))
    # safetensors with the official model-folder layout (config.json -> audio_vae_config)
    from safetensors.torch import save_file
    folder = tmp_path / "official"
    folder.mkdir()
    save_file(vae.state_dict(), str(folder / "audiovae.safetensors"))
    (folder / "config.json").write_text(json.dumps({"audio_vae_config": vae.config()}))
    assert torch.equal(load_audiovae(folder).encode(x), vae.encode(x))


def test_mismatched_or_unsafe_weights_fail_clearly(tmp_path):
    vae = AudioVAE(**SMALL)
    state = vae.state_dict()
    state.pop("encoder.fc_mu.weight_g")
    state["extra.weight"] = torch.zeros(1)
    state["decoder.model.0.bias"] = torch.zeros(3)
    with pytest.raises(WeightsError) as err:
        load_strict(AudioVAE(**SMALL), state, "somefile.pth")
    msg = str(err.value)
    assert "somefile.pth" in msg and "encoder.fc_mu.weight_g" in msg and "extra.weight" in msg
    assert "decoder.model.0.bias" in msg and "shape" in msg
    # A bare file loads with the architecture its shapes show; a config beside it that disagrees is
    # refused instead of half-loading the weights.
    torch.save(AudioVAE(**SMALL).state_dict(), tmp_path / "audiovae.pth")
    assert load_audiovae(tmp_path / "audiovae.pth").config() == AudioVAE(**SMALL).config()
    (tmp_path / "config.json").write_text(json.dumps({"audio_vae_config": {**SMALL, "decoder_dim": 64}}))
    with pytest.raises(WeightsError, match="do not match"):
        load_audiovae(tmp_path / "audiovae.pth")
    state.pop("decoder.model.0.bias")
    (tmp_path / "bare").mkdir()
    torch.save({k: v for k, v in state.items() if not k.startswith("encoder.")}, tmp_path / "bare" / "half.pth")
    with pytest.raises(WeightsError, match=r"half\.pth: no encoder\.block\.0\.weight_v.*config"):
        load_audiovae(tmp_path / "bare" / "half.pth")
    # Pickles with code payloads are refused by weights_only loading.
    torch.save({"state_dict": {"a": torch.zeros(1)}, "obj": Payload()}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="weights_only.*refused"):  # the one error of an unreadable file
        read_state_dict(tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="no such file"):
        load_audiovae(tmp_path / "missing.pth")

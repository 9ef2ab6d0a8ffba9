"""The frame-rate AudioVAE with an iSTFT head (models/istft_vae.py): interface, causality and its
stated lookahead, streaming decode joined to the one-shot decode, config dispatch, export and
loading, and the refusal of the official format."""
from __future__ import annotations

import pytest
import torch

from models.istft_vae import ISTFTAudioVAE
from models.official import to_official_config
from models.weights import build_audiovae, export_audiovae, load_audiovae
from voxlab.config import compose

SMALL = dict(latent_dim=8, dim=32, encoder_fast_blocks=1, encoder_slow_blocks=1, decoder_slow_blocks=1,
             decoder_fast_blocks=1)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def small_vae(seed: int = 0) -> ISTFTAudioVAE:
    torch.manual_seed(seed)
    vae = ISTFTAudioVAE(**SMALL).eval()
    with torch.no_grad():  # larger layer scales, so every block's output matters in these checks
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)
    return vae


def test_shapes_and_posterior():
    vae = small_vae()
    wav = torch.randn(2, 1, 640 * 5 - 100)  # padded to whole hops
    mu = vae.encode(wav)
    assert mu.shape == (2, 8, 5)
    assert vae.decode(mu).shape == (2, 1, 640 * 5)
    out = vae.train()(wav)
    assert set(out) == {"audio", "mu", "logvar", "z"} and not torch.equal(out["z"], out["mu"])


def test_encoder_is_causal():
    vae = small_vae()
    wav = torch.randn(1, 1, 640 * 6)
    changed = wav.clone()
    changed[..., 640 * 3:] = torch.randn(640 * 3)  # from frame 3 on
    a, b = vae.encode(wav), vae.encode(changed)
    assert torch.allclose(a[..., :3], b[..., :3], atol=1e-6)
    assert not torch.allclose(a[..., 3:], b[..., 3:], atol=1e-3)


def test_decoder_lookahead_is_n_fft_minus_hop():
    vae = small_vae()
    z = torch.randn(1, 8, 6)
    changed = z.clone()
    changed[..., 3] += 1.0
    a, b = vae.decode(z)[0, 0], vae.decode(changed)[0, 0]
    first = 640 * 3 - vae.lookahead_samples  # latent 3 reaches back this far (the overlap-add)
    assert vae.lookahead_samples == 640 - 160
    assert torch.allclose(a[:first], b[:first], atol=1e-6)
    assert not torch.allclose(a[first:first + 160], b[first:first + 160], atol=1e-4)


@pytest.mark.parametrize("chunks", [[1, 1, 1, 1, 1, 1, 1], [3, 4], [2, 1, 4], [7]])
def test_streaming_decode_joins_to_one_shot(chunks):
    vae = small_vae()
    z = torch.randn(2, 8, sum(chunks))
    with torch.no_grad():
        full = vae.decode(z)
        stream = vae.stream_decoder()
        parts, start = [], 0
        for n in chunks:
            parts.append(stream.push(z[..., start:start + n]))
            start += n
        assert parts[0].shape[-1] == 640 * chunks[0] - vae.lookahead_samples  # held back until the next frames
        parts.append(stream.flush())
    joined = torch.cat(parts, dim=-1)
    assert joined.shape == full.shape
    assert (joined - full).abs().max() < 1e-5


def test_config_picks_the_decoder_and_paper_default_stays_official():
    tiny = compose("audiovae", "tiny")
    vae = build_audiovae(dict(tiny.model), "tiny")
    assert isinstance(vae, ISTFTAudioVAE) and vae.hop_length == 640 and vae.latent_dim == 64
    paper = compose("audiovae", "paper")
    assert paper.model.decoder == "waveform"
    waveform = compose("audiovae", "tiny", ["model.decoder=waveform"])
    assert type(build_audiovae(dict(waveform.model), "waveform")).__name__ == "AudioVAE"
    with pytest.raises(ValueError, match="decoder 'vocoder' unknown"):
        build_audiovae({**dict(tiny.model), "decoder": "vocoder"}, "bad")


def test_export_and_load_round_trip(tmp_path):
    vae = small_vae(seed=3)
    export_audiovae(vae, tmp_path / "vae")
    loaded = load_audiovae(tmp_path / "vae")
    assert isinstance(loaded, ISTFTAudioVAE) and loaded.config() == vae.config()
    wav = torch.randn(1, 1, 640 * 4)
    with torch.no_grad():
        assert torch.equal(loaded.decode(loaded.encode(wav)), vae.decode(vae.encode(wav)))


def test_official_format_refuses_it_in_one_line():
    model = compose("d256s9", "tiny").model
    with pytest.raises(ValueError) as err:
        to_official_config(model, audio_vae_config=small_vae().config())
    assert "istft decoder" in str(err.value) and "\n" not in str(err.value)


def test_training_loss_has_finite_gradients_on_silence():
    """|STFT| of an all-zero output has a NaN gradient unless the magnitude carries an eps."""
    from models.losses import MultiResolutionSTFTLoss, MultiScaleMelLoss

    fake = torch.zeros(1, 1, 4000, requires_grad=True)
    real = torch.randn(1, 1, 4000) * 0.1
    loss = MultiScaleMelLoss(window_lengths=[64, 256], n_mels=[10, 40])(fake, real)
    loss = loss + MultiResolutionSTFTLoss([[512, 128]])(fake, real)
    loss.backward()
    assert torch.isfinite(fake.grad).all()


def test_stored_latent_statistics_standardise_encode_and_decode_undoes_them(tmp_path):
    vae = small_vae()
    wavs = [torch.randn(1, 1, 640 * 8) * 0.1 for _ in range(3)]
    with torch.no_grad():
        before = vae.decode(vae.encode(wavs[0]))
        stats = vae.set_latent_stats(wavs)
        z = torch.cat([vae.encode(w)[0].t() for w in wavs])
        after = vae.decode(vae.encode(wavs[0]))
    assert stats["frames"] == 24
    assert z.mean(0).abs().max() < 1e-4 and (z.std(0) - 1).abs().max() < 1e-3
    assert (after - before).abs().max() < 1e-5  # encode and decode cancel the standardisation
    export_audiovae(vae, tmp_path / "vae")
    loaded = load_audiovae(tmp_path / "vae")
    assert torch.equal(loaded.latent_std, vae.latent_std)
    stream = loaded.stream_decoder()
    with torch.no_grad():
        code = loaded.encode(wavs[1])
        joined = torch.cat([stream.push(code[..., :3]), stream.push(code[..., 3:]), stream.flush()], dim=-1)
        assert (joined - loaded.decode(code)).abs().max() < 1e-5

"""AudioVAE V2 (models.audiovae_v2) against the official `voxcpm` 2.0.3 class `AudioVAEV2`, built
randomly at sizes other tests do not use, every parameter moved off its init, its state dict
loaded strictly into ours: encode and decode (at every rate bucket) within 1e-5, the streaming
decoder's joined chunks equal to the one-shot decode, weights both ways, official folders and
bare files."""
from __future__ import annotations

import json

import pytest
import torch

from models import export_audiovae, load_audiovae
from models.audiovae_v2 import AudioVAEV2, RELEASE_CONFIG
from models.official_reference import install_stubs
from models.weights import WeightsError, build_audiovae, infer_audiovae_config, load_strict

install_stubs()  # the package imports torchaudio, absent here
pytest.importorskip("voxcpm")
TOL = 1e-5

# two sizes (and the condition variants): odd strides test the V2 encoder padding
SIZES = {
    "scale_bias": dict(encoder_dim=4, encoder_rates=[2, 5], latent_dim=8, decoder_dim=16, decoder_rates=[5, 3, 2],
                       sample_rate=16000, out_sample_rate=48000),
    "concat_plain_noise": dict(encoder_dim=6, encoder_rates=[3, 4], latent_dim=10, decoder_dim=24,
                               decoder_rates=[4, 3, 2, 2], depthwise=False, use_noise_block=True, sample_rate=16000,
                               out_sample_rate=64000, sr_bin_boundaries=[12000, 24000, 44100], cond_type="concat",
                               cond_dim=5, cond_out_layer=True),
    "add_out_layer": dict(encoder_dim=4, encoder_rates=[5, 2], latent_dim=6, decoder_dim=12, decoder_rates=[3, 5, 2],
                          out_sample_rate=48000, sr_bin_boundaries=[30000], cond_type="add", cond_out_layer=True),
    "no_condition": dict(encoder_dim=4, encoder_rates=[5, 3], latent_dim=6, decoder_dim=8, decoder_rates=[5, 3],
                         out_sample_rate=16000, sr_bin_boundaries=None),
}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # small ops on a busy 2-core machine
    yield


def _official_classes():
    from voxcpm.modules.audiovae import AudioVAEConfigV2, AudioVAEV2 as Official
    return Official, AudioVAEConfigV2


def _random_official(config: dict, seed: int = 0):
    Official, Config = _official_classes()
    torch.manual_seed(seed)
    model = Official(Config(**config)).eval()
    with torch.no_grad():  # off the init: g != ||v||, alpha != 1, scale != 1, bias != 0
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _pair(name: str, seed: int = 0):
    official = _random_official(SIZES[name], seed)
    ours = AudioVAEV2(**SIZES[name]).eval()
    load_strict(ours, official.state_dict(), "official V2 state dict")
    return official, ours


def _decode_both(official, ours, z, rate=None, seed=2):
    """Both decodes with the same noise draws (the noise block). The official gets one rate per item:
    its concat condition cannot broadcast one rate over a batch (ours can)."""
    sr = torch.as_tensor(official.out_sample_rate if rate is None else rate, dtype=torch.int32).reshape(-1)
    sr = sr.expand(z.shape[0])
    torch.manual_seed(seed)
    a = official.decode(z, sr)
    torch.manual_seed(seed)
    b = ours.decode(z, rate)
    return a, b


def _assert_same(official, ours, n_samples: int | None = None):
    hop = ours.hop_length
    torch.manual_seed(1)
    wav = torch.randn(2, 1, n_samples or hop * 9 + 3) * 0.2
    with torch.no_grad():
        mu_off, mu_ours = official.encode(wav, 16000), ours.encode(wav, 16000)
        assert mu_off.shape == mu_ours.shape == (2, ours.latent_dim, 10)
        assert (mu_off - mu_ours).abs().max() <= TOL
        z = mu_off + 0.1 * torch.randn_like(mu_off)
        rates = [None, 8000, 16000, 22050, 24000, 44100, 48000]
        for rate in rates + [[16000, 48000]]:  # every bucket, and one rate per item
            a, b = _decode_both(official, ours, z, rate)
            assert a.shape == b.shape == (2, 1, z.shape[-1] * ours.out_hop_length)
            assert (a - b).abs().max() <= TOL, (rate, (a - b).abs().max())


@pytest.mark.parametrize("name", list(SIZES))
def test_official_state_dict_loads_strict_and_matches(name):
    official, ours = _pair(name)
    assert set(ours.state_dict()) == set(official.state_dict())
    _assert_same(official, ours)


def test_the_rate_condition_changes_the_output():
    """Buckets differ (else the test above would pass with the condition ignored)."""
    _, ours = _pair("scale_bias")
    z = torch.randn(1, 8, 4)
    with torch.no_grad():
        assert (ours.decode(z, 16000) - ours.decode(z, 48000)).abs().max() > 1e-3
        assert torch.equal(ours.decode(z, 44100), ours.decode(z, 48000))  # one bucket: > 40000


def test_release_size_has_the_official_layout():
    Official, Config = _official_classes()
    official = Official(Config()).state_dict()
    ours = AudioVAEV2().state_dict()
    assert {k: tuple(v.shape) for k, v in official.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    assert AudioVAEV2().config() == Config().model_dump() == RELEASE_CONFIG
    assert infer_audiovae_config(official) == Config().model_dump()  # a bare release file


@pytest.mark.parametrize("name", ["scale_bias", "concat_plain_noise"])
@pytest.mark.parametrize("chunks", [[1] * 7, [2, 3, 2], [4, 1, 2]])
def test_streaming_chunks_equal_the_one_shot_decode(name, chunks):
    official, ours = _pair(name, seed=4)
    torch.manual_seed(3)
    z = torch.randn(1, ours.latent_dim, sum(chunks)) * 0.5
    with torch.no_grad():
        torch.manual_seed(5)
        one = ours.decode(z, 24000)
        torch.manual_seed(5)
        dec, parts, at = ours.stream_decoder(24000), [], 0
        for n in chunks:
            parts.append(dec.push(z[..., at:at + n]))
            at += n
        joined = torch.cat(parts + [dec.flush().to(z)], dim=-1)
    assert joined.shape == one.shape == (1, 1, sum(chunks) * ours.out_hop_length)
    if ours.use_noise_block:  # noise is drawn per chunk: only the shape is comparable
        return
    assert (joined - one).abs().max() <= TOL
    with torch.no_grad(), official.streaming_decode() as off:  # the official streaming path, default rate
        at, theirs = 0, []
        for n in chunks:
            theirs.append(off.decode_chunk(z[..., at:at + n]))
            at += n
        dec = ours.stream_decoder()
        at, mine = 0, []
        for n in chunks:
            mine.append(dec.push(z[..., at:at + n]))
            at += n
    assert (torch.cat(theirs, -1) - torch.cat(mine, -1)).abs().max() <= TOL


@pytest.mark.parametrize("name", ["scale_bias", "concat_plain_noise"])
def test_our_export_loads_into_the_official_class(tmp_path, name):
    _, ours = _pair(name, seed=6)
    export_audiovae(ours, tmp_path)
    Official, Config = _official_classes()
    official = Official(Config(**json.loads((tmp_path / "audiovae_config.json").read_text()))).eval()
    ckpt = torch.load(tmp_path / "audiovae.pth", map_location="cpu", weights_only=True)
    result = official.load_state_dict(ckpt.get("state_dict", ckpt), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    _assert_same(official, ours)
    back = load_audiovae(tmp_path)  # and ours reads its own export back as V2
    assert isinstance(back, AudioVAEV2) and back.config() == ours.config()


@pytest.mark.parametrize("weights", ["audiovae.pth", "audiovae.safetensors"])
def test_official_voxcpm2_folder_loads(tmp_path, weights, capsys):
    """A VoxCPM2 release folder: config.json (architecture voxcpm2, audio_vae_config), either weight file."""
    from safetensors.torch import save_file

    official = _random_official(SIZES["add_out_layer"], seed=7)
    state = official.state_dict()
    if weights.endswith(".pth"):
        torch.save({"state_dict": state}, tmp_path / weights)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / weights))
    config = {"architecture": "voxcpm2", "audio_vae_config": SIZES["add_out_layer"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    ours = load_audiovae(tmp_path)
    assert "voxcpm2, AudioVAE V2" in capsys.readouterr().err
    assert isinstance(ours, AudioVAEV2)
    _assert_same(official, ours)


@pytest.mark.parametrize("name", ["scale_bias", "concat_plain_noise", "add_out_layer"])
def test_bare_official_file_loads_by_inference(tmp_path, name):
    official = _random_official(SIZES[name], seed=8)
    torch.save(official.state_dict(), tmp_path / "audiovae.pth")
    ours = load_audiovae(tmp_path / "audiovae.pth")
    assert isinstance(ours, AudioVAEV2)
    assert ours.config() == _official_classes()[1](**SIZES[name]).model_dump()
    _assert_same(official, ours)


def test_bad_configs_fail_in_one_line():
    for bad, words in ((dict(cond_type="film"), "cond_type 'film' unknown"),
                       (dict(cond_type="concat"), "needs cond_out_layer=True"),
                       (dict(sr_bin_boundaries=[30000, 20000]), "must be ascending")):
        with pytest.raises(WeightsError, match=words) as err:
            build_audiovae({**SIZES["scale_bias"], **bad}, "cfg")
        assert "\n" not in str(err.value)

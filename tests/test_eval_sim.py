"""Speaker-similarity backends on tiny random checkpoints in their real formats."""
import numpy as np
import pytest
import torch
import yaml

from eval.errors import MissingWeightsError
from eval.tiny_backends import SR, make_tiny_wavlm_ecapa, make_tiny_wespeaker, write_tone
from eval.sim import cosine
from eval.sim.wavlm_ecapa import EcapaHead, WavLMEcapaSim, map_wavlm_key
from eval.sim.wespeaker_sim import ResNetSpeaker, WespeakerSim, kaldi_fbank
from voxlab.audio import load_audio


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    root = tmp_path_factory.mktemp("voices")
    a1 = load_audio(write_tone(root / "a1.wav", 1.0, 120, seed=1), SR)
    a2 = load_audio(write_tone(root / "a2.wav", 1.2, 120, seed=2), SR)
    b = load_audio(write_tone(root / "b.wav", 1.0, 260, seed=3), SR)
    return a1, a2, b


# ---------------------------------------------------------------- wespeaker


def test_resnet34_has_wespeaker_parameter_names():
    keys = set(ResNetSpeaker("ResNet34", feat_dim=80, embed_dim=256).state_dict())
    for k in ("conv1.weight", "bn1.num_batches_tracked", "layer1.2.conv2.weight", "layer2.0.shortcut.0.weight",
              "layer2.0.shortcut.1.running_var", "layer3.5.bn2.bias", "layer4.2.conv1.weight",
              "seg_1.weight", "seg_1.bias"):
        assert k in keys, k
    assert "layer1.0.shortcut.0.weight" not in keys  # no projection where shapes already match
    assert "layer4.3.conv1.weight" not in keys       # ResNet34: 3-4-6-3 blocks
    assert ResNetSpeaker("ResNet34", feat_dim=80, embed_dim=256).seg_1.in_features == 2 * 10 * 256


def test_wespeaker_folder_loads_strictly_and_scores(tmp_path, voices):
    folder = make_tiny_wespeaker(tmp_path / "ws")
    sim = WespeakerSim(folder)
    info = sim.info()
    assert info["model"].startswith("wespeaker ResNet34") and info["ignored_keys"] == 1  # projection.*
    a1, a2, b = voices
    ea1, ea2, eb = sim.embed(a1), sim.embed(a2), sim.embed(b)
    assert ea1.shape == (8,)
    assert cosine(ea1, sim.embed(a1.copy())) == pytest.approx(1.0, abs=1e-6)
    assert cosine(ea1, ea2) != pytest.approx(cosine(ea1, eb), abs=1e-4)


def test_wespeaker_rejects_a_checkpoint_with_missing_or_extra_keys(tmp_path):
    folder = make_tiny_wespeaker(tmp_path / "ws")
    state = torch.load(folder / "avg_model.pt", weights_only=True)
    state["extra.weight"] = torch.zeros(1)
    del state["seg_1.bias"]
    torch.save(state, folder / "avg_model.pt")
    with pytest.raises(MissingWeightsError, match=r"1 missing \['seg_1.bias'\], 1 unexpected \['extra.weight'\]"):
        WespeakerSim(folder)


def test_wespeaker_missing_folder_or_unsupported_model(tmp_path):
    with pytest.raises(MissingWeightsError, match="avg_model.pt"):
        WespeakerSim(tmp_path)
    folder = make_tiny_wespeaker(tmp_path / "ws")
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    cfg["model_args"]["pooling_func"] = "MQMHASTP"
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="only TSTP"):
        WespeakerSim(folder)


def test_kaldi_fbank_frames_and_int16_scaling():
    wav = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    feats = kaldi_fbank(wav, num_mel_bins=80)
    assert feats.shape == (98, 80)  # snip_edges: 1 + (16000 - 400) // 160
    # int16 scaling: log energies of speech-level audio are well above zero
    assert float(feats.mean()) > 5.0


# ---------------------------------------------------------------- WavLM + ECAPA-TDNN


def test_ecapa_head_has_unispeech_parameter_names_at_full_size():
    head = EcapaHead(n_feats=25, feat_dim=1024)
    keys = set(head.state_dict())
    for k in ("feature_weight", "layer1.conv.weight", "layer1.bn.running_mean",
              "layer2.Conv1dReluBn1.conv.weight", "layer2.Res2Conv1dReluBn.convs.6.weight",
              "layer3.Res2Conv1dReluBn.bns.0.num_batches_tracked", "layer4.Conv1dReluBn2.bn.bias",
              "layer4.SE_Connect.linear1.weight", "conv.weight", "pooling.linear1.weight",
              "pooling.linear2.bias", "bn.running_var", "linear.weight"):
        assert k in keys, k
    assert "layer2.Res2Conv1dReluBn.convs.7.weight" not in keys  # scale 8 -> 7 convs
    assert tuple(head.conv.weight.shape) == (1536, 1536, 1) and tuple(head.linear.weight.shape) == (256, 3072)


def test_original_wavlm_names_map_to_transformers_names():
    hf = {"encoder.pos_conv_embed.conv.parametrizations.weight.original0"}
    assert map_wavlm_key("encoder.pos_conv.0.weight_g", hf) == next(iter(hf))
    assert map_wavlm_key("encoder.layers.3.self_attn.grep_a", hf) == "encoder.layers.3.attention.gru_rel_pos_const"
    assert map_wavlm_key("encoder.layers.0.self_attn.relative_attention_bias.weight", hf) == \
        "encoder.layers.0.attention.rel_attn_embed.weight"
    assert map_wavlm_key("feature_extractor.conv_layers.2.2.1.bias", hf) == \
        "feature_extractor.conv_layers.2.layer_norm.bias"
    assert map_wavlm_key("layer_norm.weight", hf) == "feature_projection.layer_norm.weight"
    assert map_wavlm_key("encoder.layers.5.fc2.bias", hf) == "encoder.layers.5.feed_forward.output_dense.bias"


@pytest.fixture(scope="module")
def wavlm_ecapa(tmp_path_factory):
    return make_tiny_wavlm_ecapa(tmp_path_factory.mktemp("wavlm_ecapa"))


def test_wavlm_ecapa_loads_the_checkpoints_fine_tuned_wavlm(wavlm_ecapa, voices):
    wavlm_dir, ckpt = wavlm_ecapa
    state = torch.load(ckpt, weights_only=True)["model"]
    # the checkpoint is in UniSpeech's format: original WavLM names under feature_extract.model.
    assert "feature_extract.model.encoder.pos_conv.0.weight_g" in state
    assert "feature_extract.model.encoder.layers.0.self_attn.grep_a" in state
    sim = WavLMEcapaSim(wavlm_dir, ckpt)
    info = sim.info()
    assert info["wavlm_weights"].startswith("fine-tuned") and info["ignored_keys"] == 1
    assert info["comparable_to_seed_tts_eval"] and info["normalize_waveform"]
    loaded = sim.wavlm.state_dict()
    for orig, hf in [("encoder.layers.1.self_attn.k_proj.weight", "encoder.layers.1.attention.k_proj.weight"),
                     ("encoder.pos_conv.0.weight_v", "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
                     ("post_extract_proj.bias", "feature_projection.projection.bias")]:
        assert torch.equal(loaded[hf], state["feature_extract.model." + orig]), orig
    assert torch.equal(sim.head.linear.weight, state["linear.weight"])
    a1, a2, b = voices
    e1 = sim.embed(a1)
    assert e1.shape == (8,)
    assert cosine(e1, sim.embed(a1.copy())) == pytest.approx(1.0, abs=1e-6)
    assert cosine(e1, sim.embed(a2)) != pytest.approx(cosine(e1, sim.embed(b)), abs=1e-4)


def test_wavlm_ecapa_strict_key_checks(wavlm_ecapa, tmp_path):
    wavlm_dir, ckpt = wavlm_ecapa
    state = torch.load(ckpt, weights_only=True)["model"]
    bad = dict(state)
    del bad["pooling.linear2.bias"]
    torch.save({"model": bad}, tmp_path / "head_missing.pth")
    with pytest.raises(MissingWeightsError, match=r"1 missing \['pooling.linear2.bias'\]"):
        WavLMEcapaSim(wavlm_dir, tmp_path / "head_missing.pth")
    bad = dict(state)
    bad["feature_extract.model.encoder.layers.0.self_attn.bogus.weight"] = torch.zeros(1)
    torch.save({"model": bad}, tmp_path / "ssl_extra.pth")
    with pytest.raises(MissingWeightsError, match="unexpected"):
        WavLMEcapaSim(wavlm_dir, tmp_path / "ssl_extra.pth")


def test_wavlm_ecapa_missing_paths_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("VOXLAB_WAVLM", raising=False)
    monkeypatch.delenv("VOXLAB_ECAPA", raising=False)
    with pytest.raises(MissingWeightsError, match="no WavLM folder given; no ECAPA checkpoint given"):
        WavLMEcapaSim(None, None)
    with pytest.raises(MissingWeightsError, match="config.json not found.*wavlm_large_finetune.pth"):
        WavLMEcapaSim(tmp_path, tmp_path / "wavlm_large_finetune.pth")


# ---------------------------------------------------------------- resemblyzer


def test_resemblyzer_scores_same_voice_higher(voices):
    from eval.sim.resemblyzer_sim import ResemblyzerSim

    sim = ResemblyzerSim()
    a1, a2, b = voices
    e1 = sim.embed(a1)
    assert e1.shape == (256,) and float(e1.norm()) == pytest.approx(1.0, abs=1e-4)
    assert cosine(e1, sim.embed(a1.copy())) == pytest.approx(1.0, abs=1e-5)
    assert cosine(e1, sim.embed(a2)) > cosine(e1, sim.embed(b))
    assert sim.embed(np.zeros(SR, dtype=np.float32) + 1e-4).shape == (256,)  # no speech: still scored
    assert sim.info()["comparable_to_seed_tts_eval"] is False

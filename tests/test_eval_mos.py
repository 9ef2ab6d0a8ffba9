"""MOS predictors: DNSMOS from the speechmos wheel's ONNX files on real (espeak) speech, UTMOS22 strong
loaded from a small random checkpoint in the published state-dict format, and the MOS named in
every result (metrics.json, per_utt.csv, summary.md, logged scalars) as the SIM model is."""
import csv
import json

import numpy as np
import pytest
import soxr
import torch

from tests.helpers.rng import keep_global_rng  # noqa: F401 - autouse: the suite's random state is kept

from eval.__main__ import main
from eval.errors import MissingWeightsError
from eval.mos.utmos import UTMOSPredictor, load_utmos
from eval.reporting.report import results_table
from eval.reporting.results import collect
from eval.run import log_metrics
from tests.helpers.testset import make_testset


@pytest.fixture(scope="module")
def speech():
    from datamodules.corpus import espeak

    pcm = espeak.synth("The quick brown fox jumps over the lazy dog.", "en-us")
    return soxr.resample(pcm.astype(np.float32) / 32768, espeak.SAMPLE_RATE, 16000)


def test_dnsmos_rates_clean_speech_above_the_same_speech_with_noise(speech):
    from eval.mos.dnsmos import DNSMOSPredictor

    dnsmos = DNSMOSPredictor()
    clean = dnsmos.score(speech)
    noisy = dnsmos.score(speech + 0.1 * np.random.default_rng(0).standard_normal(len(speech)).astype(np.float32))
    assert set(clean) == {"mos", "sig", "bak", "p808"} and all(1.0 <= v <= 5.0 for v in clean.values())
    assert clean["bak"] > noisy["bak"] + 1.0 and clean["mos"] > noisy["mos"] + 0.5, (clean, noisy)
    assert "not comparable with UTMOS" in dnsmos.info()["measures"]


def utmos_state(hidden=64, conv=32, layers=2, seed=0) -> dict:
    """A random UTMOS22 strong state dict with the published checkpoint's key names (fairseq-style
    wav2vec2.*, domain/judge embeddings, BLSTM, projection), small sizes."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: 0.1 * torch.randn(*shape, generator=g)  # noqa: E731
    w = "wav2vec2."
    s = {f"{w}feature_extractor.conv_layers.0.0.weight": r(conv, 1, 10),
         f"{w}feature_extractor.conv_layers.0.2.weight": 1 + r(conv), f"{w}feature_extractor.conv_layers.0.2.bias": r(conv)}
    for i, k in enumerate([3, 3, 3, 3, 2, 2], start=1):
        s[f"{w}feature_extractor.conv_layers.{i}.0.weight"] = r(conv, conv, k)
    s.update({f"{w}layer_norm.weight": 1 + r(conv), f"{w}layer_norm.bias": r(conv),
              f"{w}post_extract_proj.weight": r(hidden, conv), f"{w}post_extract_proj.bias": r(hidden),
              f"{w}encoder.pos_conv.0.bias": r(hidden), f"{w}encoder.pos_conv.0.weight_g": 1 + r(1, 1, 16).abs(),
              f"{w}encoder.pos_conv.0.weight_v": r(hidden, hidden // 16, 16),
              f"{w}encoder.layer_norm.weight": 1 + r(hidden), f"{w}encoder.layer_norm.bias": r(hidden),
              f"{w}mask_emb": r(hidden)})
    for i in range(layers):
        p = f"{w}encoder.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            s[f"{p}self_attn.{name}.weight"], s[f"{p}self_attn.{name}.bias"] = r(hidden, hidden), r(hidden)
        s.update({f"{p}fc1.weight": r(2 * hidden, hidden), f"{p}fc1.bias": r(2 * hidden),
                  f"{p}fc2.weight": r(hidden, 2 * hidden), f"{p}fc2.bias": r(hidden)})
        for name in ("self_attn_layer_norm", "final_layer_norm"):
            s[f"{p}{name}.weight"], s[f"{p}{name}.bias"] = 1 + r(hidden), r(hidden)
    feat, rnn = hidden + 16 + 16, 24
    s.update({"domain_emb": r(1, 16), "judge_emb": r(1, 16), "projection.0.weight": r(48, 2 * rnn),
              "projection.0.bias": r(48), "projection.2.weight": r(1, 48), "projection.2.bias": r(1)})
    for suffix in ("", "_reverse"):
        s.update({f"blstm.weight_ih_l0{suffix}": r(4 * rnn, feat), f"blstm.weight_hh_l0{suffix}": r(4 * rnn, rnn),
                  f"blstm.bias_ih_l0{suffix}": r(4 * rnn), f"blstm.bias_hh_l0{suffix}": r(4 * rnn)})
    return s


def test_utmos_loads_the_published_format_and_its_weights_set_the_score(tmp_path, speech):
    torch.set_num_threads(1)
    state = utmos_state()
    path = tmp_path / "utmos22_strong_step7459_v1.pt"
    torch.save(state, path)
    model = load_utmos(path)
    # renamed weights land where transformers' wav2vec2 keeps them
    conv0 = model.wav2vec2.feature_extractor.conv_layers[0]
    assert torch.equal(conv0.conv.weight, state["wav2vec2.feature_extractor.conv_layers.0.0.weight"])
    assert torch.equal(conv0.layer_norm.bias, state["wav2vec2.feature_extractor.conv_layers.0.2.bias"])
    attn = model.wav2vec2.encoder.layers[1].attention
    assert torch.equal(attn.out_proj.weight, state["wav2vec2.encoder.layers.1.self_attn.out_proj.weight"])
    v, g = state["wav2vec2.encoder.pos_conv.0.weight_v"], state["wav2vec2.encoder.pos_conv.0.weight_g"]
    expected = g * v / v.norm(dim=(0, 1), keepdim=True)  # weight norm over the kernel axis (dim=2)
    assert torch.allclose(model.wav2vec2.encoder.pos_conv_embed.conv.weight, expected, atol=1e-6)

    base = UTMOSPredictor(str(path)).score(speech)["mos"]
    assert np.isfinite(base)
    # the utterance score is 2 x the mean frame score + 3: the last bias moves it by exactly twice its change
    state["projection.2.bias"] += 0.25
    torch.save(state, path)
    assert UTMOSPredictor(str(path)).score(speech)["mos"] == pytest.approx(base + 0.5, abs=1e-4)


def test_utmos_errors_name_the_missing_path_and_keys(tmp_path, monkeypatch):
    monkeypatch.delenv("VOXLAB_UTMOS", raising=False)
    with pytest.raises(MissingWeightsError, match="--utmos PATH"):
        UTMOSPredictor(None)
    with pytest.raises(MissingWeightsError, match=f"not found: {tmp_path / 'absent.pt'}"):
        UTMOSPredictor(str(tmp_path / "absent.pt"))
    state = utmos_state()
    del state["judge_emb"]
    torch.save(state, tmp_path / "torn.pt")
    with pytest.raises(MissingWeightsError, match="missing judge_emb"):
        load_utmos(tmp_path / "torn.pt")
    # `make eval` fails before any scoring, naming the path
    meta = make_testset(tmp_path / "ts", gen_dir=tmp_path / "gen")
    code = main(["--testset", str(meta), "--wavs", str(tmp_path / "gen"), "--asr", "none", "--sim", "none",
                 "--mos", "utmos", "--utmos", str(tmp_path / "absent.pt"), "--out", str(tmp_path / "out")])
    assert code == 2 and not (tmp_path / "out").exists()


def test_dnsmos_is_named_in_every_result(tmp_path):
    meta = make_testset(tmp_path / "ts", gen_dir=tmp_path / "gen")
    out = tmp_path / "out"
    assert main(["--testset", str(meta), "--wavs", str(tmp_path / "gen"), "--asr", "none", "--sim", "none",
                 "--mos", "dnsmos", "--utts", "en_001,zh_001", "--out", str(out), "--device", "cpu"]) == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["mos_model"].startswith("DNSMOS") and m["mos_backend"]["name"] == "dnsmos"
    assert 1 <= m["mos"] <= 5 and set(m["mos_components"]) == {"mos", "sig", "bak", "p808"}
    assert all(1 <= s["mos"] <= 5 for s in m["by_lang"].values())
    assert log_metrics(m, "en")["eval/en/mos"] == m["mos"]
    with (out / "per_utt.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert all(1 <= float(r["mos"]) <= 5 and r["mos_model"] == m["mos_model"] for r in rows)
    assert np.mean([float(r["mos"]) for r in rows]) == pytest.approx(m["mos"], abs=1e-3)
    assert f"predicted by {m['mos_model']}" in (out / "summary.md").read_text(encoding="utf-8")
    res = dict(zip(results_table(collect([out])).headers, results_table(collect([out])).rows[0]))
    assert (res["MOS"], res["MOS model"]) == (f"{m['mos']:.2f}", m["mos_model"])

"""Hidden-state analysis (eval.analysis.probes, datamodules.corpus.phones) on a tiny random model: table, probes,
figures, CLI, the phone alignment, and that the probes detect a linear signal and nothing more."""
from __future__ import annotations

import csv
import json
import string

import numpy as np
import pytest
import torch

import models
from datamodules.corpus import espeak, render
from datamodules.corpus.voices import VOICE_BY_ID
from datamodules.corpus import phones
from eval.analysis import probes as analysis
from models.audiovae import AudioVAE
from models.tts import TTSModel
from models.voxcpm import VoxCPMBackbone
from voxlab.audio import MelSpectrogram
from voxlab.text import CharTokenizer

TEXTS = ["Anna found a red apple.", "Where is the old train?", "Peter walked to Boston today.",
         "Please close the window."]
VOICES = ["en_v0", "en_v1", "en_v2"]
# hop 640 as the real VAE (25 Hz latents), so the sequences are as long as real ones
TINY_VAE = {"encoder_dim": 2, "encoder_rates": [2, 5, 8, 8], "latent_dim": 8, "decoder_dim": 16,
            "decoder_rates": [8, 8, 5, 2], "sample_rate": 16000}
ROWS = ["LocEnc output", "TSLM last hidden (pre-FSQ)", "FSQ output", "RALM last hidden"]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def tiny_model(residual_lm_layers: int = 1, seed: int = 0, fsq: bool = True) -> TTSModel:
    torch.manual_seed(seed)
    lm = {"vocab_size": 192, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
          "num_key_value_heads": 2, "num_hidden_layers": 1, "max_position_embeddings": 512}
    local = {"hidden_dim": 16, "ffn_dim": 32, "num_heads": 2, "num_layers": 1}
    bb = VoxCPMBackbone(lm=lm, encoder=local, dit=local, feat_dim=8, residual_lm_layers=residual_lm_layers,
                        fsq={"enabled": fsq, "latent_dim": 8, "scale": 9})
    return TTSModel(bb, AudioVAE(**TINY_VAE), CharTokenizer(list(string.ascii_letters + " ,.?!"))).eval()


@pytest.fixture(scope="module")
def cli_result(tmp_path_factory):
    """The CLI on an exported tiny model (the path `make analyze MODEL=...` takes)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("analysis")
    folder = models.export(tiny_model(seed=1), root / "model", official=False)
    out = root / "out"
    rc = analysis.main(["--model", str(folder), "--out", str(out), "--sentences", "4", "--voices", *VOICES,
                          "--control"])
    assert rc == 0
    return out


def test_table_rows_values_and_figures(cli_result):
    result = json.loads((cli_result / "analysis.json").read_text(encoding="utf-8"))
    assert [r["hidden_state"] for r in result["rows"]] == ROWS
    assert result["utterances"] == 4 * 3 and result["voices"] == VOICES
    paper = {r["hidden_state"]: r for r in csv.DictReader(open(analysis.REFERENCE, encoding="utf-8"))}
    for row in result["rows"]:
        assert row["missing"] is None
        for key, _ in analysis.PROBES:
            assert row[key] is not None and 0.0 <= row[key] <= 1.0, (row["hidden_state"], key, row[key])
        assert row["paper"]["asv_eer"] == float(paper[row["hidden_state"]]["asv_eer"])  # the right paper row
        png = cli_result / row["figure"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert result["rows"][0]["dim"] == 16 and result["rows"][1]["dim"] == 32  # raw LocEnc width, LM width
    with open(cli_result / "probing.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["hidden_state"] for r in rows] == ROWS and rows[3]["paper_asv_eer"] == "13.24"
    md = (cli_result / "analysis.md").read_text(encoding="utf-8")
    assert "| RALM last hidden |" in md and "tsne_ralm.png" in md and "—" not in md.split("## t-SNE")[0]
    assert not result["unknown_chars"] and 0 < result["probed_patches"] < result["patches"]
    assert 0 < result["chance"]["phone"] < 0.5 and result["phones"] >= 10
    assert all(0.0 <= result["input"][k] <= 1.0 for k, _ in analysis.PROBES) and "VAE latent patches" in md
    control = result["control_rows"]
    assert [r["hidden_state"] for r in control] == ROWS and "## Random-weights control" in md
    assert all(0.0 <= r[k] <= 1.0 for r in control for k, _ in analysis.PROBES)
    values = [[r[k] for k, _ in analysis.PROBES] for r in control]
    assert values != [[r[k] for k, _ in analysis.PROBES] for r in result["rows"]]  # other weights


def test_no_ralm_model_reports_ralm_and_fsq_missing(tmp_path):
    model = tiny_model(residual_lm_layers=0, fsq=False)  # the no_ralm_* experiments: no RALM, no FSQ
    result = analysis.analyze(model, tmp_path, TEXTS[:3], VOICES[:2], log=lambda *_: None)
    rows = {r["location"]: r for r in result["rows"]}
    assert [r["hidden_state"] for r in result["rows"]] == ROWS
    assert "no RALM" in rows["ralm"]["missing"] and "no FSQ" in rows["fsq"]["missing"]
    for key in ("ralm", "fsq"):
        assert all(rows[key][k] is None for k, _ in analysis.PROBES) and rows[key]["figure"] is None
        assert not (tmp_path / f"tsne_{key}.png").exists()
    assert rows["tslm"]["missing"] is None and 0 <= rows["tslm"]["speaker_acc"] <= 1
    assert (tmp_path / "tsne_tslm.png").exists()
    line = next(ln for ln in (tmp_path / "analysis.md").read_text(encoding="utf-8").splitlines()
                if ln.startswith("| RALM last hidden"))
    assert line.count("—") == len(analysis.PROBES) and "13.24" in line  # missing, never zero; paper beside
    csv_row = list(csv.DictReader(open(tmp_path / "probing.csv", encoding="utf-8")))[3]
    assert csv_row["speaker_acc"] == "" and csv_row["hidden_state"] == "RALM last hidden"


def test_states_cover_every_audio_patch():
    model = tiny_model()
    utts = [analysis.Utterance("Anna found a red apple.", 0, "en_v0", np.zeros(16000 * 2 + 1, np.float32)),
            analysis.Utterance("Hi.", 1, "en_v1", np.zeros(640 * 3, np.float32))]
    states = analysis.extract_states(model, utts, batch_size=2)
    # 2 s + 1 sample = 51 latent frames -> 26 patches; 3 frames -> 2 patches
    assert [s.shape for s in states["tslm"]] == [(26, 32), (2, 32)]
    assert set(states) == {"input", "locenc", "tslm", "fsq", "ralm"}
    assert states["input"][1].shape == (2, 16) and np.allclose(states["input"][1][-1, 8:], 0)  # 3 frames + 1 pad
    # the FSQ output of a random model is on the grid Linear(round(tanh(.)*9)/9): not the TSLM state
    assert not np.allclose(states["fsq"][0], states["tslm"][0])


def _synthetic(n_sent=6, n_spk=4, reps=3, dim=40, signal=3.0, seed=0):
    """Utterance-like samples: `reps` per (sentence, speaker)."""
    rng = np.random.default_rng(seed)
    spk = np.repeat(np.arange(n_spk), n_sent * reps)
    sent = np.tile(np.repeat(np.arange(n_sent), reps), n_spk)
    return rng, spk, sent, rng.standard_normal((len(spk), dim))


def test_probe_detects_a_linear_speaker_code():
    rng, spk, sent, noise = _synthetic()
    codes = rng.standard_normal((4, noise.shape[1]))
    x = noise + 3.0 * codes[spk]
    assert analysis.probe_accuracy(x, spk, sent, n_splits=5) >= 0.95
    # noise only: held-out accuracy stays near chance (0.25)
    assert analysis.probe_accuracy(noise, spk, sent, n_splits=5) < 0.5
    # a code per (speaker, sentence) pair has no speaker direction that carries to unseen sentences
    pair = rng.standard_normal((4, 6, noise.shape[1]))
    assert analysis.probe_accuracy(0.3 * noise + 3.0 * pair[spk, sent], spk, sent, n_splits=5) < 0.5


def test_leave_one_group_out():
    rng, spk, sent, noise = _synthetic()
    x = noise + 3.0 * rng.standard_normal((6, noise.shape[1]))[sent]
    assert analysis.probe_accuracy(x, sent, spk) >= 0.95
    assert analysis.probe_accuracy(noise, sent, spk) < 0.4  # chance 1/6
    assert analysis.probe_accuracy(x, sent, np.zeros_like(spk)) is None  # one voice: nothing held out
    # a label fixed per sentence (as a phone is by sentence and time): other voices of the same
    # sentence give it away, unless the sentence is held out too
    per_sentence = np.array([0, 1, 2, 0, 1, 2])[sent]
    assert analysis.probe_accuracy(x, per_sentence, spk, 3) >= 0.95
    assert analysis.probe_accuracy(x, per_sentence, spk, 3, sent, 3) < 0.5
    assert set(analysis.group_folds(["b", "a", "c", "a"], 2).tolist()) == {0, 1}


def test_bad_input_is_refused(tmp_path):
    model = tiny_model()
    with pytest.raises(analysis.AnalysisError, match="unknown voice 'en_v99'"):
        analysis.analyze(model, tmp_path, TEXTS[:2], ["en_v0", "en_v99"], log=lambda *_: None)
    with pytest.raises(analysis.AnalysisError, match="speaks 'zh'"):
        analysis.build_set(TEXTS[:2], ["en_v0", "zh_v0"], "en")
    with pytest.raises(analysis.AnalysisError, match="at least 2 sentences"):
        analysis.analyze(model, tmp_path, TEXTS[:1], VOICES, log=lambda *_: None)
    assert analysis.main(["--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2


def test_sentences_are_fixed_and_distinct():
    a, b = analysis.pick_sentences(8, "en", 0), analysis.pick_sentences(8, "en", 0)
    assert a == b and len(set(a)) == 8 and analysis.pick_sentences(8, "en", 1) != a


def test_phone_alignment_matches_the_rendered_audio():
    v = VOICE_BY_ID["en_v1"]
    text = "Anna found a red apple."
    pcm, marks = phones.synth_with_phones(text, v.espeak, v.rate, v.pitch, v.pitch_range)
    assert np.array_equal(pcm, espeak.synth(text, v.espeak, v.rate, v.pitch, v.pitch_range))  # same audio
    segs = phones.phone_segments(text, "en", "en_v1")
    names = [n for _, _, n in segs if n != phones.SILENCE]
    assert names[:3] == ["a", "n", "@"] and "'" not in "".join(names)  # stress marks dropped
    starts = [s for s, _, _ in segs]
    assert starts == sorted(starts) and starts[0] >= 0.1  # render() puts 0.1 s of silence first
    assert abs(segs[-1][1] + 0.15 - len(render(text, "en", "en_v1")) / 16000) < 0.01
    labels = phones.patch_labels(segs, 30, 0.08)
    assert labels[0] == phones.SILENCE and labels[-1] == phones.SILENCE and len(set(labels)) > 8


def test_frame_selection_drops_silence_and_single_voice_phones():
    seg = [(0.0, 0.16, "a"), (0.16, 0.32, "b")]
    utts = [analysis.Utterance("x", 0, "v0", np.zeros(1), seg),
            analysis.Utterance("x", 0, "v1", np.zeros(1), seg[:1] + [(0.16, 0.32, "c")])]
    fr = analysis.select_frames(utts, [5, 5], 0.08)  # patches 4 (0.32 s on) are silence
    assert fr.index.tolist() == [0, 1, 5, 6] and fr.phone.tolist() == ["a"] * 4
    assert fr.speaker.tolist() == ["v0", "v0", "v1", "v1"]


def test_phone_probe_reads_phones_from_log_mel_patches():
    """End to end on real audio: log-mel features of each 80 ms patch name its phone (espeak's
    alignment) on unseen voices and sentences above chance; misaligned labels fall below it."""
    utts = analysis.build_set(TEXTS, VOICES, "en")
    mel = MelSpectrogram(16000, n_fft=1280, hop_length=1280, n_mels=40, power=2.0, center=False)
    feats = [mel(torch.nn.functional.pad(torch.from_numpy(u.wav), (0, -len(u.wav) % 1280))[None])[0].T.numpy()
             for u in utts]  # frame j = samples [j * 1280, (j + 1) * 1280) = patch j
    fr = analysis.select_frames(utts, [len(f) for f in feats], 0.08)
    x = np.concatenate(feats)[fr.index]
    chance = np.unique(fr.phone, return_counts=True)[1].max() / len(fr.phone)
    acc = analysis.probe_accuracy(x, fr.phone, fr.speaker, 3, fr.sentence, 3)
    assert acc > 1.6 * chance, (acc, chance)  # measured 0.18 vs 0.087
    assert analysis.probe_accuracy(x, np.roll(fr.phone, 5), fr.speaker, 3, fr.sentence, 3) < 1.2 * chance
    assert analysis.probe_accuracy(x, fr.speaker, fr.sentence, 5) > 0.7  # and the voice, from 80 ms

"""The protocol's exact English ASR path: ours against Seed-TTS-Eval's own run_wer.py lines
(tests/data/seedtts_run_wer.py, a copy) on a small random transformers Whisper built here, same wavs:
identical transcripts, identical WER; and which backend `--whisper` picks, and what results say."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from eval.asr import resolve_english_asr
from eval.asr.transformers_whisper_asr import LARGE_V3, TransformersWhisperASR
from eval.backends import Backends, EvalConfig
from eval.errors import MissingWeightsError
from eval.normalize import normalize
from eval.run import evaluate
from eval.tiny_backends import write_tone
from eval.wer import count_errors
from tests.helpers.tiny_hf_whisper import build_tiny_whisper

pytest.importorskip("zhon")  # run_wer.py's punctuation list
RATES = (16000, 24000, 22050, 44100)  # 16 kHz as is; the others through scipy's resampling


def _protocol():
    path = Path(__file__).parent / "data" / "seedtts_run_wer.py"
    spec = importlib.util.spec_from_file_location("seedtts_run_wer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(whisper folder, wav paths at several rates, the protocol's transcripts of them)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hfwhisper")
    folder = build_tiny_whisper(root / "whisper", max_length=12)
    wavs = [write_tone(root / "wavs" / f"en_{i:03d}.wav", 1.0 + 0.7 * i, 100 + 60 * i, seed=i, sr=sr)
            for i, sr in enumerate(RATES)]
    ref = _protocol()
    processor, model = ref.load_en_model(str(folder))
    protocol_texts = [ref.transcribe_en(processor, ref.LegacyGenerate(model), str(w)) for w in wavs]
    return folder, wavs, protocol_texts


def test_transcripts_equal_run_wer_py(tiny):
    folder, wavs, protocol_texts = tiny
    ours = TransformersWhisperASR(folder).transcribe_files(wavs)
    assert ours == protocol_texts
    # not vacuous: every transcript has text, and they depend on the audio
    assert all(t.strip() for t in ours) and len(set(ours)) >= 3, ours


def _references(hyps):
    """Target texts a few edits away from each hypothesis (case, punctuation, a word dropped or
    changed), and one unrelated: WERs between 0 and over 1."""
    refs = []
    for i, hyp in enumerate(hyps):
        words = hyp.split()
        if i == 0:
            words = [w.upper() for w in words] + ["Again!"]
        elif i == 1:
            words = words[:-2] + ["(done),"] if len(words) > 2 else ["done"]
        elif i == 2:
            words = [words[0] + "."] + ["it's", "fine;"] + words[1:]
        else:
            words = ["Nothing", "alike", "here."]
        refs.append(" ".join(words))
    return refs


def test_wer_equals_run_wer_py_through_the_whole_evaluation(tiny, tmp_path):
    folder, wavs, protocol_texts = tiny
    ref = _protocol()
    targets = _references(protocol_texts)
    root = tmp_path / "set"
    lines = []
    for i, (wav, text) in enumerate(zip(wavs, targets)):
        prompt = write_tone(root / "prompts" / f"p{i}.wav", 1.0, 150, seed=50 + i)
        lines.append(f"{wav.stem}|A prompt.|{prompt.relative_to(root)}|{text}")
    (root / "meta.lst").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = EvalConfig(whisper=str(folder), sim="none", device="cpu", lang="en")
    m = evaluate(root / "meta.lst", wavs[0].parent, tmp_path / "out", config=config, log=lambda _: None)

    expected = [ref.process_one(hyp, truth)[2] for hyp, truth in zip(protocol_texts, targets)]
    assert 0 < min(expected) and max(expected) > 1  # a spread of WERs, not all 0 or all 1
    assert m["wer"] == pytest.approx(100 * sum(expected) / len(expected), abs=1e-4)
    import csv
    with (tmp_path / "out" / "per_utt.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["hypothesis"] for r in rows] == protocol_texts
    assert [float(r["wer"]) for r in rows] == pytest.approx(expected, abs=1e-4)
    asr = m["asr"]["en"]
    assert asr["name"] == "transformers-whisper" and asr["protocol_path"] is True
    assert asr["protocol_model"] is False and m["asr_protocol_exact"] is False  # tiny weights, not large-v3
    summary = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "transformers-whisper" in summary and "not whisper-large-v3" in summary


@pytest.mark.parametrize("hyp, truth", [
    ("Hello, World!  It's   fine.", "hello world it's fine"),
    ("hello\nworld", "hello world"),               # a newline is not a space to jiwer's split
    ("a\tb c", "a b c"),
    ("“Quoted” — text… and 3.5%", "quoted text and 35"),
    ("", "nothing was said"),
    ("don't STOP", "Don’t stop"),                  # only the ASCII apostrophe is kept
    ("  leading and trailing  ", "leading and trailing"),
])
def test_normalisation_and_wer_equal_process_one(hyp, truth):
    ref = _protocol()
    expected = ref.process_one(hyp, truth)[2]
    ours = count_errors(normalize(truth, "en", "seedtts"), normalize(hyp, "en", "seedtts", hypothesis=True))
    assert ours.wer == pytest.approx(expected)


def test_whisper_folder_selects_the_transformers_backend(tiny, tmp_path, monkeypatch):
    folder = tiny[0]
    spec = resolve_english_asr(str(folder))
    assert spec.backend == "transformers" and spec.path == folder
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("VOXLAB_WHISPER_HF", str(folder))
    assert resolve_english_asr("auto").backend == "transformers"
    backend = Backends(EvalConfig(sim="none", device="cpu")).asr("en")
    assert isinstance(backend, TransformersWhisperASR) and backend.info()["protocol_path"]


def test_large_v3_dimensions_make_the_result_the_protocols(tmp_path, monkeypatch):
    folder = tmp_path / "models--openai--whisper-large-v3" / "snapshots" / "abc"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "whisper", **LARGE_V3}))
    for name in ("generation_config.json", "preprocessor_config.json", "tokenizer.json", "model.safetensors"):
        (folder / name).write_text("{}")
    monkeypatch.delenv("VOXLAB_WHISPER_HF", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # found in the Hugging Face cache layout
    spec = resolve_english_asr("auto")
    assert (spec.backend, spec.path, spec.label) == ("transformers", folder, "whisper-large-v3")


def test_an_incomplete_folder_names_what_it_lacks(tmp_path):
    folder = tmp_path / "whisper-large-v3"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(MissingWeightsError, match="generation_config.json.*preprocessor_config.json.*tokenizer.json"):
        resolve_english_asr(str(folder))
    (folder / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    for name in ("generation_config.json", "preprocessor_config.json", "tokenizer.json"):
        (folder / name).write_text("{}")
    with pytest.raises(MissingWeightsError, match="model_type is 'wav2vec2', not 'whisper'"):
        resolve_english_asr(str(folder))


def test_a_stereo_wav_is_refused_naming_it(tiny, tmp_path):
    import numpy as np
    import soundfile as sf

    from eval.errors import EvalError

    path = tmp_path / "stereo.wav"
    sf.write(path, np.zeros((1600, 2), dtype=np.float32), 16000)
    with pytest.raises(EvalError, match="stereo.wav: 2 channels"):
        TransformersWhisperASR(tiny[0]).transcribe_files([path])


def test_a_named_folder_that_is_absent_fails_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VOXLAB_WHISPER_HF", str(tmp_path / "nowhere"))
    with pytest.raises(MissingWeightsError, match="transformers whisper folder not found: .*nowhere"):
        resolve_english_asr("auto")

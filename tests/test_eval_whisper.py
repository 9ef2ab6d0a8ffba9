"""openai-whisper backend on a tiny random checkpoint saved in openai-whisper's own format."""
import numpy as np
import pytest
import torch

from eval.asr.whisper_asr import WhisperASR, resolve_whisper
from eval.backends import EvalConfig, check_backends
from eval.errors import MissingWeightsError
from eval.tiny_backends import TINY_WHISPER_DIMS, make_tiny_whisper


@pytest.fixture(autouse=True)
def _one_thread():
    # many tiny ops: one thread is ~10x faster than two on a loaded 2-core machine
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return make_tiny_whisper(tmp_path_factory.mktemp("whisper") / "tiny-random.pt")


def _wavs(*lengths):
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]


def test_checkpoint_is_in_openai_whisper_format_and_loads_through_load_model(tiny_ckpt):
    import whisper

    ckpt = torch.load(tiny_ckpt, weights_only=True)
    assert set(ckpt) == {"dims", "model_state_dict"}
    assert ckpt["dims"] == TINY_WHISPER_DIMS
    model = whisper.load_model(str(tiny_ckpt), device="cpu")
    assert model.is_multilingual and model.dims.n_vocab == 51866  # large-v3's vocabulary


def test_batched_greedy_decoding_matches_one_by_one(tiny_ckpt):
    assert torch.get_num_threads() == 1
    asr = WhisperASR(str(tiny_ckpt), device="cpu", batch_size=3)
    wavs = _wavs(16000, 24000, 12000, 20000)
    batched = asr.transcribe(wavs)  # batches of 3 then 1
    assert len(batched) == 4 and all(isinstance(t, str) and t for t in batched)
    assert len(set(batched)) > 1  # the random model's text depends on the audio...
    assert batched == [asr.transcribe([w])[0] for w in wavs]  # ...and on nothing else
    info = asr.info()
    assert info["decoding"] == "greedy" and info["language"] == "en" and info["dtype"] == "float32"
    assert asr.options.temperature == 0.0 and asr.options.beam_size is None
    assert asr.options.without_timestamps and not asr.options.fp16


def test_audio_longer_than_30_s_is_transcribed_in_full(tiny_ckpt):
    """The transcript of a 31 s wav is every segment of whisper's sequential long-form pass, the
    ones decoded from a window past the first 30 s included. Fails if a long wav is cut to 30 s
    (pad_or_trim, the short path) or only the first window's (or segment's) text is kept."""
    import whisper

    asr = WhisperASR(str(tiny_ckpt), device="cpu")
    (wav,) = _wavs(16000 * 31)
    (text,) = asr.transcribe([wav])
    assert asr.info()["long_form"] == 1
    segments = asr.model.transcribe(wav, language="en", task="transcribe", temperature=0.0, fp16=False,
                                    condition_on_previous_text=False, verbose=None)["segments"]
    later = [seg["text"].strip() for seg in segments if seg["seek"] > 0]  # windows reaching past 30 s
    assert later and all(later)
    assert text == "".join(seg["text"] for seg in segments).strip() and text.endswith(later[-1])
    (first_30_s,) = asr.transcribe([wav[:whisper.audio.N_SAMPLES]])
    assert first_30_s and text != first_30_s


def test_missing_named_model_names_the_expected_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError) as err:
        resolve_whisper("large-v3")
    assert str(tmp_path / "whisper" / "large-v3.pt") in str(err.value)
    assert "--whisper" in str(err.value)
    # a named model present in the cache resolves without any download
    (tmp_path / "whisper").mkdir()
    (tmp_path / "whisper" / "large-v3.pt").write_bytes(b"x")
    assert resolve_whisper("large-v3") == ("large-v3", tmp_path / "whisper" / "large-v3.pt")


def test_missing_checkpoint_path_fails_clearly(tmp_path):
    with pytest.raises(MissingWeightsError, match="whisper checkpoint not found: .*absent.pt"):
        WhisperASR(str(tmp_path / "absent.pt"))


def test_preflight_lists_every_missing_backend_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("VOXLAB_PARAFORMER", raising=False)
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    config = EvalConfig(whisper="large-v3", paraformer=str(tmp_path / "no_para"), sim="wespeaker", wespeaker=None,
                        device="cpu")
    with pytest.raises(MissingWeightsError) as err:
        check_backends(config, asr_langs=("en", "zh"))
    msg = str(err.value)
    assert "large-v3.pt" in msg and "no_para" in msg and "--sim wespeaker" in msg
    check_backends(config, asr_langs=(), sim=False)  # transcripts given, no SIM: nothing needed

"""The mel spectrogram against an independent reference, audio I/O and the text frontends."""
import json

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from voxlab.audio import AudioError, MelSpectrogram, load_audio, save_audio
from voxlab.text import AUDIO_END_ID, AUDIO_START_ID, CharTokenizer, HFTokenizer


def test_mel_matches_librosa_reference():
    rng = np.random.default_rng(0)
    wav = (rng.standard_normal(8000) * 0.1).astype(np.float32)
    ours = MelSpectrogram(16000, n_fft=512, hop_length=160, win_length=400, n_mels=40, power=2.0, log=False)(
        torch.from_numpy(wav)[None])[0].numpy()
    ref = librosa.feature.melspectrogram(y=wav, sr=16000, n_fft=512, hop_length=160, win_length=400,
                                         window="hann", center=True, pad_mode="reflect", power=2.0,
                                         n_mels=40, htk=True, norm=None)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)


def test_mel_is_differentiable_and_log_floored():
    wav = torch.zeros(1, 1, 4000, requires_grad=True)
    mel = MelSpectrogram(16000, 256, 64, n_mels=20)(wav)
    assert torch.allclose(mel, torch.full_like(mel, np.log(1e-5)))
    (mel.sum()).backward()
    assert wav.grad is not None and torch.isfinite(wav.grad).all()  # |STFT| of silence: no NaN gradient


def test_audio_roundtrip_and_errors(tmp_path):
    wav = np.sin(np.linspace(0, 100, 22050)).astype(np.float32) * 0.5
    sf.write(str(tmp_path / "x.wav"), wav, 22050)
    out = load_audio(tmp_path / "x.wav", 16000)
    assert out.dtype == np.float32 and abs(len(out) - 16000) <= 1
    save_audio(tmp_path / "y.wav", out, 16000)
    assert sf.info(str(tmp_path / "y.wav")).samplerate == 16000
    sf.write(str(tmp_path / "st.wav"), np.zeros((100, 2), np.float32), 16000)
    with pytest.raises(AudioError, match="st.wav: 2 channels"):
        load_audio(tmp_path / "st.wav", 16000)
    assert load_audio(tmp_path / "st.wav", 16000, mono="mix").shape == (100,)
    with pytest.raises(AudioError, match="nope.wav: cannot read"):
        load_audio(tmp_path / "nope.wav", 16000)


def test_char_tokenizer(tmp_path):
    tok = CharTokenizer.build(["hello world", "你好"], tmp_path / "vocab.txt")
    again = CharTokenizer.from_file(tmp_path / "vocab.txt")
    ids = again.encode("hello 你")
    assert ids == tok.encode("hello 你") and min(ids) >= 128 and len(ids) == 7
    assert again.decode(ids) == "hello 你"
    assert again.encode("z") == [3]  # unknown
    assert tok.vocab_size == 128 + len(set("hello world你好"))
    assert (tok.audio_start_id, tok.audio_end_id) == (AUDIO_START_ID, AUDIO_END_ID) == (101, 102)


def _tiny_hf_tokenizer(folder):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "\u2581hello": 3, "\u2581": 4, "你好": 5, "你": 6, "好": 7,
             "\u2581你好": 8, "世界": 9, "世": 10, "界": 11, "h": 12}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(folder)


def test_hf_tokenizer_splits_multichar_chinese(tmp_path):
    _tiny_hf_tokenizer(tmp_path / "tok")
    tok = HFTokenizer(tmp_path / "tok")
    raw = tok.tok.encode("你好", add_special_tokens=False)
    assert len(raw) == 1  # the folder's own tokenizer keeps the word whole
    assert tok.encode("你好") == [6, 7]
    assert tok.encode("hello") == [3]
    with pytest.raises(FileNotFoundError, match="tokenizer folder not found"):
        HFTokenizer(tmp_path / "missing")


def test_hf_tokenizer_follows_the_official_chinese_rule(tmp_path):
    """A vocabulary that tells the rules apart: "▁你们" has no bare "你们" entry, "㐀㐁" (extension A)
    is outside U+4E00-U+9FFF; "▁世界" has a bare "世界". The official splits the last only."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "\u2581你们", "你", "们", "\u2581㐀㐁", "㐀㐁", "㐀", "㐁", "\u2581世界", "世界", "世",
             "界", "\u2581hello"]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>").save_pretrained(
        tmp_path / "tok")
    text = "你们 㐀㐁 世界 hello"
    tok = HFTokenizer(tmp_path / "tok")
    assert tok.encode(text) == [3, 6, 12, 13, 14]
    assert HFTokenizer(tmp_path / "tok", cjk_split="any").encode(text) == [4, 5, 8, 9, 12, 13, 14]
    from models.official_reference import install_stubs
    install_stubs()
    utils = pytest.importorskip("voxcpm.model.utils")
    assert utils.mask_multichar_chinese_tokens(tok.tok)(text) == tok.encode(text)
    with pytest.raises(ValueError, match="cjk_split"):
        HFTokenizer(tmp_path / "tok", cjk_split="all")

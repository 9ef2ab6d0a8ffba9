"""`make synth` never writes over what it should not, and says when the text is not what is heard:
unknown characters, text with no known character, a cut by the length cap."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import models
from models.tts import TextWarning
from test_inference import make_model
from voxlab.cli import synth


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return make_model()


@pytest.fixture(scope="module")
def folder(model, tmp_path_factory):
    return models.export(model, tmp_path_factory.mktemp("synth") / "m")


def run(folder, out, *extra, text="hello world"):
    return synth.main(["--model", str(folder), "--text", text, "--out", str(out), "--seed", "0", "--max-len", "6",
                       *extra])


def test_generate_reports_unknown_characters_and_refuses_none_known(model):
    with pytest.warns(TextWarning, match=r"3 character\(s\).*vocabulary.*: '1' '\$'"):
        model.generate("hello 1$1", seed=0, max_len=6)
    with pytest.raises(ValueError, match="no character the model's vocabulary knows.*'1' '2' '\\$'"):
        model.generate("12 $", seed=0)


def test_generate_warns_when_the_length_cap_cuts(model):
    with pytest.warns(TextWarning, match="length cap of 3 patches, set by max_len=3.*cut off"):
        model.generate("hello world", seed=0, max_len=3)  # the stop head counts from the 4th patch


def test_existing_files_that_are_not_wavs_are_never_written_over(folder, tmp_path, capsys):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"precious checkpoint")
    for extra in ([], ["--overwrite"]):
        assert run(folder, ckpt, *extra) == 2
        assert "not a readable wav" in capsys.readouterr().err or not extra
    assert ckpt.read_bytes() == b"precious checkpoint"
    # checked before the model loads
    assert synth.main(["--model", str(tmp_path / "none"), "--text", "hi", "--out", str(ckpt)]) == 2
    assert "exists" in capsys.readouterr().err


def test_existing_wav_needs_overwrite(folder, tmp_path, capsys):
    out = tmp_path / "a.wav"
    sf.write(out, np.zeros(100, np.float32), 16000)
    assert run(folder, out) == 2 and "--overwrite" in capsys.readouterr().err
    assert sf.info(str(out)).frames == 100
    assert run(folder, out, "--overwrite") == 0
    assert sf.info(str(out)).frames != 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]  # no temporary file left


def test_folder_out_gets_the_text_slug_and_says_so(folder, tmp_path, capsys):
    assert run(folder, tmp_path, text="hello, world 1") == 0
    captured = capsys.readouterr()
    assert f"writing {tmp_path / 'hello_world_1.wav'}" in captured.out
    assert "warning: 1 character(s)" in captured.err and "'1'" in captured.err
    assert sf.info(str(tmp_path / "hello_world_1.wav")).samplerate == 16000
    assert run(folder, tmp_path, text="hello, world 1") == 2  # now it exists


def test_failed_write_leaves_no_temporary_file(folder, tmp_path, monkeypatch):
    def broken(self, *a, **k):  # the temporary file is open and partly written
        raise OSError("disk full")

    monkeypatch.setattr(sf.SoundFile, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        synth.synthesize(str(folder), "hello", str(tmp_path / "x.wav"), seed=0, max_len=4)
    assert list(tmp_path.iterdir()) == []


def test_hf_tokenizer_reports_its_unknown_characters(folder):
    from voxlab.text import HFTokenizer

    tok = HFTokenizer(folder)  # the Llama tokenizer an export writes beside voxlab_tokenizer.json
    assert tok.unknown("hello 1 w$rld 1") == ["1", "$", "1"]

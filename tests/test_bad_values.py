"""Values that are numbers but not usable ones: NaN/inf or absurd peaks in audio (manifest
entries, voice prompts), guidance and temperature settings that only make noise, and a run
whose batches keep being skipped for non-finite losses."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import models
from datamodules.manifest import read_manifest
from test_inference import make_model
from voxlab.cli import synth


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.set_num_threads(1)
    return models.export(make_model(), tmp_path_factory.mktemp("bad_values") / "m")


def _speech(n=16000, seed=0):
    return np.random.default_rng(seed).normal(0, 0.1, n).astype(np.float32)


def test_nan_inf_and_absurd_peaks_are_bad_entries_named_in_the_summary(tmp_path):
    wavs = {"ok.wav": _speech(), "nan.wav": _speech(), "inf.wav": _speech(), "loud.wav": _speech() * 1e5}
    wavs["nan.wav"][10] = np.nan
    wavs["inf.wav"][20] = -np.inf
    for name, wav in wavs.items():
        sf.write(tmp_path / name, wav, 16000, subtype="FLOAT")
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"audio": n, "text": "hi"}) + "\n" for n in wavs))
    entries, report = read_manifest(tmp_path / "m.jsonl")
    assert [e.utt for e in entries] == ["ok"]
    summary = report.summary()
    assert report.bad["bad samples"] == 3
    for line, name in ((2, "nan.wav"), (3, "inf.wav"), (4, "loud.wav")):
        assert f"m.jsonl:{line}: bad samples: {tmp_path / name}" in summary
    assert "non-finite samples" in summary and "is over 4 (full scale is 1)" in summary


def test_a_reference_audio_with_bad_samples_is_a_bad_entry_naming_it(tmp_path):
    """An official `ref_audio` is checked as the target audio is (it used to pass, then end in a
    KeyError traceback): NaN in a float wav, inf in a double wav, an absurd peak, by a relative or
    an absolute path; one line each naming the reference file, and data.strict refuses them."""
    from datamodules.manifest import ManifestError

    refs = {"nan.wav": ("FLOAT", 5, np.nan), "inf.wav": ("DOUBLE", 7, np.inf), "loud.wav": ("FLOAT", None, 1e5)}
    sf.write(tmp_path / "target.wav", _speech(), 16000)
    lines = [{"audio": "target.wav", "text": "fine", "utt": "ok"}]
    for i, (name, (subtype, at, value)) in enumerate(refs.items()):
        wav = _speech(seed=i).astype(np.float64)
        if at is None:
            wav *= value
        else:
            wav[at] = value
        sf.write(tmp_path / name, wav, 16000, subtype=subtype)
        ref = str(tmp_path / name) if name == "inf.wav" else name
        lines.append({"audio": "target.wav", "text": "hi", "utt": name, "ref_audio": ref})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    entries, report = read_manifest(tmp_path / "m.jsonl")
    assert [e.utt for e in entries] == ["ok"] and report.bad["bad samples"] == 3
    for line, name in ((2, "nan.wav"), (3, "inf.wav"), (4, "loud.wav")):
        assert f"m.jsonl:{line}: bad samples: ref_audio {tmp_path / name}: " in report.summary()
    with pytest.raises(ManifestError, match=r"m.jsonl:2: bad samples: ref_audio .*nan.wav: 1 non-finite"):
        read_manifest(tmp_path / "m.jsonl", strict=True)


def test_a_reference_audio_longer_than_max_duration_is_refused_naming_it(tmp_path):
    """A `ref_audio` is packed with its target: one longer than data.max_duration (600 s against
    20 s, or just over) is a bad entry naming the reference, as an over-long target is; an integer
    PCM one by an absolute path too; one within the limit is kept."""
    from datamodules.manifest import ManifestError

    sf.write(tmp_path / "target.wav", _speech(), 16000)
    sizes = {"long.wav": 600 * 1000, "just_over.wav": 20 * 1000 + 10, "within.wav": 19 * 1000}
    for name, n in sizes.items():  # at 1 kHz: 600 s in 600k samples
        sf.write(tmp_path / name, np.zeros(n, np.float32), 1000, subtype="FLOAT" if name == "long.wav" else "PCM_16")
    lines = [{"audio": "target.wav", "text": "hi", "utt": name,
              "ref_audio": str(tmp_path / name) if name == "just_over.wav" else name} for name in sizes]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    entries, report = read_manifest(tmp_path / "m.jsonl", max_duration=20)
    assert [e.utt for e in entries] == ["within.wav"] and report.bad["too long"] == 2
    assert f"m.jsonl:1: too long: ref_audio {tmp_path / 'long.wav'}: 600.00 s > 20" in report.summary()
    assert f"m.jsonl:2: too long: ref_audio {tmp_path / 'just_over.wav'}: 20.01 s > 20" in report.summary()
    with pytest.raises(ManifestError, match=r"ref_audio .*long.wav: 600.00 s > 20.0 s \(data.max_duration\)"):
        read_manifest(tmp_path / "m.jsonl", max_duration=20, strict=True)


@pytest.mark.parametrize("args, message", [
    (["--cfg", "nan"], "cfg=nan"), (["--cfg", "1e9"], "cfg=1000000000.0"), (["--cfg", "-1"], "cfg=-1.0"),
    (["--temperature", "nan"], "temperature=nan"), (["--temperature", "inf"], "temperature=inf"),
    (["--max-len", "0"], "max_len=0"), (["--max-len", "-5"], "max_len=-5"), (["--timesteps", "0"], "timesteps=0"),
])
def test_settings_that_only_make_noise_are_errors(folder, tmp_path, capsys, args, message):
    out = tmp_path / "x.wav"
    assert synth.main(["--model", str(folder), "--text", "hello", "--out", str(out), "--seed", "0", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_a_prompt_with_a_nan_sample_is_an_error(folder, tmp_path, capsys):
    wav = _speech(8000)
    wav[1234] = np.nan
    sf.write(tmp_path / "p.wav", wav, 16000, subtype="FLOAT")
    out = tmp_path / "x.wav"
    assert synth.main(["--model", str(folder), "--text", "hello", "--out", str(out), "--prompt-wav",
                       str(tmp_path / "p.wav"), "--prompt-text", "hi"]) == 2
    err = capsys.readouterr().err
    assert "p.wav" in err and "1 non-finite samples" in err and not out.exists()
    model = models.load(str(folder))
    with pytest.raises(ValueError, match="prompt audio: 1 non-finite samples"):
        model.generate("hello", prompt_wav=wav, prompt_text="hi", max_len=4)


def test_a_run_that_keeps_skipping_batches_stops_with_the_reason(tmp_path, capsys):
    from lightning_modules.nonfinite import NonFiniteLoss
    from tests.helpers.toy_module import toy_experiment
    from voxlab.cli.train import main, train

    exp = toy_experiment(tmp_path, run={"checkpoint_every_steps": 1000}, trainer={"max_steps": 200})
    with pytest.raises(NonFiniteLoss, match=r"3 of its 5 batches were skipped.*nonfinite.max_skip_share=0.2"):
        train(exp, overrides=["module.nan_from=2", "nonfinite.min_batches=5"])
    assert main(["--exp", exp, "module.nan_from=2", "nonfinite.min_batches=5"]) == 1
    err = capsys.readouterr().err
    assert "error: stopping the run" in err and "Traceback" not in err
    run = train(exp, overrides=["module.nan_at=3", "trainer.max_steps=30", "nonfinite.min_batches=5"])
    assert json.loads((run / "status.json").read_text())["state"] == "finished"  # one bad batch in 30 is fine


def test_a_short_run_whose_batches_were_all_skipped_does_not_end_finished(tmp_path):
    """Fewer batches than nonfinite.min_batches, every one non-finite: judged at the run's end."""
    from lightning_modules.nonfinite import NonFiniteLoss
    from tests.helpers.toy_module import toy_experiment
    from voxlab.cli.train import train

    exp = toy_experiment(tmp_path, run={"checkpoint_every_steps": 1000}, trainer={"max_steps": 6})
    with pytest.raises(NonFiniteLoss, match=r"stopping the run at step 6: 6 of its 6 batches were skipped"):
        train(exp, overrides=["module.nan_from=0", "nonfinite.min_batches=50", "trainer.max_epochs=1"])


@pytest.mark.timeout(300)
def test_an_audiovae_run_gone_non_finite_stops_instead_of_hanging(tts_assets):
    """lr=inf turns the weights non-finite after the first step, so every later loss is NaN: the
    generator-step budget used to wait for a finite batch forever."""
    from lightning_modules.nonfinite import NonFiniteLoss
    from test_exact_resume import vae_overrides
    from voxlab.cli.train import train

    root, corpus, _ = tts_assets
    with pytest.raises(NonFiniteLoss, match="batches were skipped"):
        train("audiovae", "tiny", vae_overrides(root, corpus, steps=1000, runs="nan_vae_runs")
              + ["optim.generator.lr=.inf", "nonfinite.min_batches=3"])


def test_training_texts_outside_the_vocabulary_are_named_in_one_warning(tts_assets, tmp_path, caplog):
    """Another script, a zero-width space, an emoji, a symbol: each character the tokenizer cannot
    write (it would train as <unk>) is named with its code point and first line, once per manifest."""
    import logging

    from conftest import tts_overrides
    from datamodules.tts import TTSDataModule
    from voxlab.config import compose

    root, corpus, vae = tts_assets
    lines = [json.loads(x) for x in (corpus / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    odd = {2: "Привет, как дела?", 5: "A zero\u200bwidth space.", 7: "Smile \U0001F642 now.", 9: "Tab\u2063sep ⌘."}
    for i, line in enumerate(lines):
        line["audio"] = str(corpus / line["audio"])
        line["text"] = odd.get(i, line["text"])
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    cfg = compose("d256s9", "tiny", tts_overrides(root, corpus, vae) + [f"data.train_manifest={manifest}"])
    dm = TTSDataModule(cfg)
    dm.prepare_data()
    with caplog.at_level(logging.WARNING, logger="datamodules.tts"):
        dm.setup("fit")
    warned = [r.getMessage() for r in caplog.records if "outside the tokenizer's vocabulary" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(f"{manifest}: 4 of {len(lines)} texts hold")
    for code, line_no in (("U+041F", 3), ("U+200B ZERO WIDTH SPACE", 6), ("U+1F642", 8), ("U+2063 INVISIBLE SEPARATOR", 10),
                          ("U+2318", 10)):
        assert f"{code}" in warned[0] and f"(line {line_no})" in warned[0], code

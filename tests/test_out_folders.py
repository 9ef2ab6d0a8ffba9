"""Output folders of `python -m eval`, `python -m eval.reporting.report` and `models.export`: a folder that
is not a previous result of the same kind is never written into (even with --overwrite); a previous
one only with --overwrite."""
from __future__ import annotations

import json
import os

import pytest
import torch

import models
from eval.__main__ import main as eval_main
from tests.helpers.testset import make_testset
from eval.reporting.report import main as report_main
from models.tts import TTSModel
from models.voxcpm import VoxCPMBackbone
from tests.helpers.report_fixtures import make_run
from test_inference import make_model


def _eval(tmp_path, out, *extra):
    meta = make_testset(tmp_path / "ts" / "mini", gen_dir=tmp_path / "gen")
    tr = tmp_path / "tr.jsonl"
    tr.write_text("".join(json.dumps({"utt": u, "text": "x"}) + "\n" for u in ("en_001", "en_002", "zh_001", "zh_002")))
    return eval_main(["--testset", str(meta), "--wavs", str(tmp_path / "gen"), "--transcripts", str(tr),
                      "--sim", "none", "--out", str(out), *extra])


def test_eval_never_writes_into_a_folder_that_is_not_a_result(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "summary.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        assert _eval(tmp_path, out, *extra) == 2
        assert "not an evaluation result folder" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["summary.txt"]
    (tmp_path / "file").write_text("x")
    assert _eval(tmp_path, tmp_path / "file") == 2 and "is a file" in capsys.readouterr().err
    # a previous result: refused, then replaced with --overwrite
    assert _eval(tmp_path, tmp_path / "res") == 0
    assert _eval(tmp_path, tmp_path / "res") == 2 and "--overwrite" in capsys.readouterr().err
    assert _eval(tmp_path, tmp_path / "res", "--overwrite") == 0


def test_report_out_must_be_new_empty_or_a_previous_report(tmp_path, capsys):
    run = make_run(tmp_path / "runs", "d256s9", {"en": {10: (2.0, 0.5)}})
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    for extra in ([], ["--overwrite"]):
        assert report_main(["--runs", str(run), "--out", str(out), "--samples", "0", *extra]) == 2
        assert "not a previous report" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.md"]
    fresh = tmp_path / "rep"
    assert report_main(["--runs", str(run), "--out", str(fresh), "--samples", "0"]) == 0
    assert report_main(["--runs", str(run), "--out", str(fresh), "--samples", "0"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert report_main(["--runs", str(run), "--out", str(fresh), "--samples", "0", "--overwrite"]) == 0


def test_export_refuses_folders_that_are_not_exports_and_clears_a_previous_one(tmp_path):
    torch.set_num_threads(1)
    model = make_model()
    official = tmp_path / "official"
    official.mkdir()
    (official / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="not a VoxLab export.*even with overwrite=True"):
        models.export(model, official, overwrite=True)
    assert [p.name for p in official.iterdir()] == ["config.json"]
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        models.export(model, tmp_path / "f", overwrite=True)
    folder = models.export(model, tmp_path / "exp")
    with pytest.raises(FileExistsError, match="previous export.*overwrite=True"):
        models.export(model, folder)
    # an ablation the official format cannot express: the old config.json must not stay behind
    kwargs = {k: v for k, v in model.backbone.config.items() if k != "_target_"}
    ablation = TTSModel(VoxCPMBackbone(**{**kwargs, "residual_input_e": False}), model.vae, model.tokenizer)
    models.export(ablation, folder, official=False, overwrite=True)
    assert not (folder / "config.json").exists()


def test_generation_never_writes_over_the_test_set_or_a_folder_it_did_not_create(tmp_path, capsys):
    """--model with --wavs naming the test set's own wavs (by any spelling: a symlink, `..`, the
    test set's root, a hard-linked copy) or a user's folder is refused before the model loads."""
    meta = make_testset(tmp_path / "ts" / "mini")
    tr = tmp_path / "tr.jsonl"
    tr.write_text("".join(json.dumps({"utt": u, "text": "x"}) + "\n" for u in ("en_001", "en_002", "zh_001", "zh_002")))
    (tmp_path / "link").symlink_to(tmp_path / "ts" / "mini")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "en_001.wav").write_bytes(b"my own recording")
    linked = tmp_path / "linked"
    linked.mkdir()
    os.link(tmp_path / "ts" / "mini" / "wavs" / "zh_002.wav", linked / "zh_002.wav")
    (linked / "zh_002.gen.json").write_text("{}")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    cases = {tmp_path / "link" / "prompt-wavs": "test set's own",
             tmp_path / "ts" / "mini" / "prompt-wavs" / ".." / "wavs": "test set's own",
             tmp_path / "ts" / "mini": "test set's own", linked: "test set's own",
             mine: "not a folder of generated wavs"}
    for wavs, message in cases.items():
        code = eval_main(["--testset", str(meta), "--model", str(tmp_path / "no_model.ckpt"), "--wavs", str(wavs),
                          "--transcripts", str(tr), "--sim", "none", "--out", str(tmp_path / "res")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, wavs
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before

    from eval.run import evaluate
    from eval.backends import EvalConfig
    from eval.errors import EvalError
    from eval.tiny_backends import write_tone

    def fake_generate(items, out_dir):
        for it in items:
            write_tone(out_dir / f"{it.utt}.wav", 0.5, 200)

    with pytest.raises(EvalError, match="test set's own"):  # the library entry point holds too
        evaluate(meta, tmp_path / "ts" / "mini" / "wavs", tmp_path / "r0", config=EvalConfig(sim="none"),
                 transcripts=tr, generation={"m": 1}, generate_fn=fake_generate)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    # a folder it created is reused (resumable); an empty one is taken
    (tmp_path / "empty").mkdir()
    for wavs in (tmp_path / "gen", tmp_path / "gen", tmp_path / "empty"):
        evaluate(meta, wavs, tmp_path / f"r_{wavs.name}", config=EvalConfig(sim="none"), transcripts=tr,
                 generation={"m": 1}, generate_fn=fake_generate, overwrite=True)
    assert (tmp_path / "gen" / "zh_002.wav").is_file()

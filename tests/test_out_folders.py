"""Output folders of `python -m eval`, `python -m eval.reporting.report` and `models.export`: a folder that
is not a previous result of the same kind is never written into (even with --overwrite); a previous
one only with --overwrite."""
from __future__ import annotations

import json

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

"""Scoring without ASR: WER left missing with its reason (never zero), SIM still scored; the
the ASR policy (required | auto | none: one meaning for `make eval`, the callback and the demo); the report showing such a WER as missing."""
import csv
import json

import pytest
import torch

from eval.__main__ import main
from eval.backends import ASR_DISABLED, EvalConfig, asr_skip_reason
from eval.errors import EvalError
from eval.tiny_backends import make_tiny_whisper
from tests.helpers.testset import MINI_LINES, make_testset
from eval.reporting.report import MISSING, main_table, results_table
from eval.reporting.results import collect
from eval.run import evaluate, log_metrics


@pytest.fixture(autouse=True)
def _no_weights(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty_cache"))  # no whisper weights anywhere
    monkeypatch.delenv("VOXLAB_PARAFORMER", raising=False)


@pytest.fixture
def testset(tmp_path):
    # named `en` so that the report puts it in the paper's EN column
    return make_testset(tmp_path / "testset" / "en", gen_dir=tmp_path / "gen"), tmp_path / "gen"


def test_asr_none_leaves_wer_missing_and_scores_sim(testset, tmp_path):
    meta, gen = testset
    out = tmp_path / "out"
    assert main(["--testset", str(meta), "--wavs", str(gen), "--asr", "none", "--sim", "resemblyzer",
                 "--out", str(out), "--device", "cpu"]) == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["wer"] is None and m["wer_corpus"] is None and m["counts"] is None
    assert m["wer_unavailable"] == ASR_DISABLED
    assert m["asr"] == {"source": "none", "reason": ASR_DISABLED}
    assert all(s["wer"] is None and -1 <= s["sim"] <= 1 for s in m["by_lang"].values())
    assert -1.0 <= m["sim"] <= 1.0 and m["sim_backend"]["name"] == "resemblyzer"
    # no wer key rather than a zero
    assert log_metrics(m, "en") == {"eval/en/sim": m["sim"], "eval/en/duration_ratio": m["duration_ratio"]}

    with (out / "per_utt.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["utt"] for r in rows] == [u for u, *_ in MINI_LINES]
    for r in rows:
        assert (r["wer"], r["S"], r["D"], r["I"], r["N"], r["hypothesis"]) == ("",) * 6
        assert -1 <= float(r["sim"]) <= 1 and r["reference_norm"]

    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert f"WER unavailable: {ASR_DISABLED}" in summary and "Lowest SIM" in summary
    assert "**0.000**" not in summary and "Highest WER" not in summary


def test_skip_asr_reason_needs_no_asr_weights_and_is_recorded(testset, tmp_path):
    meta, gen = testset
    config = EvalConfig(sim="none", device="cpu", whisper="large-v3")  # absent here; asr=required, the default
    assert asr_skip_reason(config, ["en", "zh"]) is None  # required: the preflight fails instead
    with pytest.raises(EvalError, match="large-v3"):  # make eval still fails on missing weights
        evaluate(meta, gen, tmp_path / "strict", config=config)
    assert not (tmp_path / "strict" / "metrics.json").exists()
    reason = asr_skip_reason(EvalConfig(sim="none", whisper="large-v3", asr="auto"), ["en", "zh"])
    assert "whisper 'large-v3' weights not found" in reason and "paraformer-zh" in reason
    assert "\n" not in reason

    m = evaluate(meta, gen, tmp_path / "out", config=config, skip_asr=reason)
    assert m["wer"] is None and m["wer_unavailable"] == reason and m["sim"] is None
    with pytest.raises(EvalError, match="transcripts"):
        evaluate(meta, gen, tmp_path / "both", config=config, skip_asr=reason, transcripts=tmp_path / "t.jsonl")


def test_asr_policy_with_weights_and_when_disabled(tmp_path):
    ckpt = make_tiny_whisper(tmp_path / "tiny.pt")
    for policy in ("required", "auto"):
        assert asr_skip_reason(EvalConfig(whisper=str(ckpt), asr=policy), ["en"]) is None
        assert asr_skip_reason(EvalConfig(whisper=str(ckpt), asr=policy), []) is None
    assert asr_skip_reason(EvalConfig(whisper=str(ckpt), asr="none"), ["en"]) == ASR_DISABLED
    with pytest.raises(ValueError, match="asr must be one of"):
        EvalConfig(asr="whisper").validate()


def test_asr_auto_means_if_available_for_make_eval_too(testset, tmp_path, capsys):
    """`--asr auto` scores without WER when the weights are missing, as the callback's `auto` does;
    the default (`required`) fails before any work. Fails if `make eval` read `auto` as required
    again (the two meanings of issue 28), or if the default stopped failing on missing weights."""
    meta, gen = testset
    args = ["--testset", str(meta), "--wavs", str(gen), "--sim", "none", "--whisper", "large-v3", "--device", "cpu"]
    assert main(args + ["--out", str(tmp_path / "strict")]) == 2
    assert "large-v3" in capsys.readouterr().err and not (tmp_path / "strict" / "metrics.json").exists()
    assert main(args + ["--asr", "auto", "--out", str(tmp_path / "auto")]) == 0
    m = json.loads((tmp_path / "auto" / "metrics.json").read_text(encoding="utf-8"))
    assert m["wer"] is None and "whisper 'large-v3' weights not found" in m["wer_unavailable"]
    assert m["config"]["asr"] == "auto"


def test_report_shows_missing_wer_as_missing_not_zero(testset, tmp_path):
    meta, gen = testset
    out = tmp_path / "out"
    assert main(["--testset", str(meta), "--wavs", str(gen), "--asr", "none", "--sim", "resemblyzer",
                 "--out", str(out), "--device", "cpu"]) == 0
    entries = collect([out])
    headers, [row] = main_table(entries).headers, main_table(entries).rows[-1:]
    cells = dict(zip(headers, row))
    assert cells["EN WER"] == MISSING and cells["EN SIM"] not in (MISSING, "0.0", "0.00")
    res = dict(zip(results_table(entries).headers, results_table(entries).rows[0]))
    assert res["WER"] == MISSING and res["corpus WER"] == MISSING and res["ASR"] == "none (WER unavailable)"

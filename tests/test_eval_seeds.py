"""Seeds and intervals: the bootstrap over utterances and seeds (eval/intervals.py), and `python -m eval
--seeds 0 1` on a tiny random model writing per-seed folders and the combined interval (eval/seeds.py)."""
import json

import numpy as np
import pytest
import torch

import models
from eval.__main__ import main
from eval.intervals import RESAMPLES, bootstrap, excludes_zero, paired_difference
from eval.tiny_backends import write_tone
from test_inference import make_model


def _grid(n_seeds, n_utts, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    utt_effect = rng.normal(10, 4, n_utts)  # utterances differ far more than seeds do
    return {s: {f"u{i}": float(utt_effect[i] + rng.normal(0, 1) + shift) for i in range(n_utts)}
            for s in range(n_seeds)}


def _rows(grid):
    return [list(row.values()) for row in grid.values()]


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_utterances():
    small, large = bootstrap(_rows(_grid(3, 10))), bootstrap(_rows(_grid(3, 200)))
    for iv in (small, large):
        assert iv["low"] < iv["mean"] < iv["high"] and iv["resamples"] == RESAMPLES
    assert large["high"] - large["low"] < 0.5 * (small["high"] - small["low"])
    assert bootstrap(_rows(_grid(3, 10))) == small  # a fixed bootstrap seed: the same interval every time
    one_value = bootstrap([[5.0, 5.0], [5.0, 5.0]])
    assert one_value["low"] == one_value["high"] == one_value["mean"] == 5.0
    with pytest.raises(ValueError, match="complete seeds x utterances grid"):
        bootstrap([[1.0, float("nan")]])


def test_paired_difference_marks_only_a_real_shift():
    a = _grid(3, 30)
    same = paired_difference(a, a)
    assert same["low"] <= 0 <= same["high"] and not same["significant"] and not excludes_zero(same)
    shifted = paired_difference(_grid(3, 30, shift=2.0), a)  # every utterance 2 points higher
    assert shifted["significant"] and shifted["low"] > 0 and shifted["mean"] == pytest.approx(2.0)
    # pairing removes the utterances' spread: an unpaired look at the same shift would straddle zero
    assert bootstrap(_rows(a))["high"] - bootstrap(_rows(a))["low"] > 2.0
    noisy = paired_difference(_grid(3, 30, seed=1), a)  # other draws, no shift: not marked
    assert noisy["low"] <= 0 <= noisy["high"] and not noisy["significant"]
    # only shared utterances and seeds are paired; no shared seed: per-utterance means, paired
    assert paired_difference({0: {"x": 1.0, "y": 2.0}}, {0: {"y": 1.0, "z": 0.0}})["n_utts"] == 1
    assert paired_difference({5: {"x": 3.0}}, {0: {"x": 1.0}, 1: {"x": 2.0}})["mean"] == pytest.approx(1.5)
    assert paired_difference({0: {"x": 1.0}}, {0: {"y": 1.0}}) is None


LINES = [("en_001", "we test", "hello world"), ("en_002", "we test again", "a b c"),
         ("en_003", "a prompt", "this is it")]


@pytest.fixture
def tiny(tmp_path):
    torch.set_num_threads(1)
    root = tmp_path / "set"
    for i, (utt, *_) in enumerate(LINES):
        write_tone(root / "prompt" / f"{utt}.wav", 0.4, 120 + 30 * i, seed=i)
    (root / "meta.lst").write_text("".join(f"{u}|{p}|prompt/{u}.wav|{t}\n" for u, p, t in LINES), encoding="utf-8")
    tr = tmp_path / "tr.jsonl"  # transcripts replace ASR: one error in en_002
    tr.write_text("".join(json.dumps({"utt": u, "text": "a b d" if u == "en_002" else t}) + "\n"
                          for u, _, t in LINES), encoding="utf-8")
    return root / "meta.lst", models.export(make_model(), tmp_path / "model"), tr, tmp_path


def test_cli_seeds_write_per_seed_results_and_an_interval(tiny, capsys):
    meta, model, tr, tmp = tiny
    out = tmp / "out"
    args = ["--testset", str(meta), "--model", str(model), "--seeds", "0", "1", "--transcripts", str(tr),
            "--sim", "resemblyzer", "--max-len", "4", "--timesteps", "2", "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["seeds"] == [0, 1] and m["generation"]["seeds"] == [0, 1] and "seed" not in m["generation"]
    for s in (0, 1):
        one = json.loads((out / f"seed_{s}" / "metrics.json").read_text(encoding="utf-8"))
        assert one["generation"]["seed"] == s and len(list((out / f"seed_{s}" / "wavs").glob("*.wav"))) == 3
        assert m["per_seed"][str(s)]["sim"] == one["sim"] and m["per_seed"][str(s)]["path"] == f"seed_{s}"
    seed_wavs = [(out / f"seed_{s}" / "wavs" / "en_001.wav").read_bytes() for s in (0, 1)]
    assert seed_wavs[0] != seed_wavs[1]  # each seed its own noise
    assert m["wer"] == pytest.approx(100 / 9, abs=1e-3)  # 1 of 3 words in one of three utterances
    for key in ("wer", "sim"):
        iv = m["intervals"][key]
        assert iv["low"] <= m[key] <= iv["high"] and iv["n_seeds"] == 2 and iv["n_utts"] == 3
    assert m["per_seed"]["0"]["sim"] != m["per_seed"]["1"]["sim"]
    summary = (out / "summary.md").read_text(encoding="utf-8")
    iv = m["intervals"]["wer"]
    assert f"WER {m['wer']:.1f} [{iv['low']:.1f}, {iv['high']:.1f}] (2 seeds, 95% bootstrap)" in summary
    assert f"{RESAMPLES} resamples" in summary and "[seed_1](seed_1/summary.md)" in summary

    # the report: the figure with its interval, the seeds, each seed's flagged utterances with its wav
    from eval.reporting.report import write_report
    md = write_report([out], tmp / "report").read_text(encoding="utf-8")
    assert f"{m['wer']:.2f} [{iv['low']:.2f}, {iv['high']:.2f}]" in md and "| 0, 1 |" in md
    assert "en_001 (seed 1)" in md and list((tmp / "report" / "audio").glob("*_set_en_001_seed1_flagged.wav"))

    # a stopped run resumes per seed: a finished seed is kept, the missing one redone
    (out / "metrics.json").unlink()
    (out / "seed_1" / "metrics.json").unlink()
    kept = (out / "seed_0" / "metrics.json").read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(args) == 0
    assert "seed 0: kept" in capsys.readouterr().err
    assert (out / "seed_0" / "metrics.json").read_text(encoding="utf-8") == kept
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["intervals"] == m["intervals"]
    assert main(args) == 2 and "metrics.json exists" in capsys.readouterr().err  # never overwritten
    with pytest.raises(SystemExit):
        main([*args, "--seeds", "0", "0"])  # a repeated seed
    with pytest.raises(SystemExit):
        main(["--testset", str(meta), "--wavs", str(tmp), "--seeds", "0", "1"])  # existing wavs are one seed

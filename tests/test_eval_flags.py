"""Failure flags per utterance (eval/flags.py) on constructed inputs, through the whole evaluation
(metrics.json, per_utt.csv, summary.md, the generation records) and into the report with audio."""
import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from eval.backends import EvalConfig
from eval.flags import active_seconds, expected_duration, summarize_flags, utterance_flags
from eval.reporting.report import write_report
from eval.run import evaluate
from eval.tiny_backends import write_tone
from eval.wer import longest_insertion_run

SR = 16000


def flags(**kw):
    base = dict(wer=0.1, insertion_run=0, gen_s=1.0, gt_s=1.0, expected_s=None, stopped_by="stop_head", active_s=1.0)
    return utterance_flags(**{**base, **kw})


def test_hallucination_is_wer_over_100_or_a_run_of_insertions():
    assert longest_insertion_run("a b c".split(), "a x y z w b c".split()) == 4
    assert longest_insertion_run("a b c".split(), "x a y b z c".split()) == 1
    assert longest_insertion_run("a b".split(), []) == 0
    assert flags(wer=1.2)["hallucination"] is True
    assert flags(wer=1.0)["hallucination"] is False  # all wrong is not more than was said
    assert flags(wer=0.5, insertion_run=4)["hallucination"] is True
    assert flags(wer=0.5, insertion_run=3)["hallucination"] is False
    assert flags(wer=None, insertion_run=None)["hallucination"] is None  # no WER: undecided


def test_truncation_against_the_ground_truth_or_the_prompt_rate():
    assert flags(gen_s=0.45, gt_s=1.0)["truncation"] is True
    assert flags(gen_s=0.55, gt_s=1.0)["truncation"] is False
    assert flags(gen_s=0.55, gt_s=1.0)["basis"] == "ground_truth"
    # 2 s of prompt for 20 characters: 10 characters are expected to take 1 s
    expected = expected_duration(2.0, "abcde fghij klmno pqrst", "abcde fghij")
    assert expected == pytest.approx(1.0)
    f = flags(gen_s=0.4, gt_s=None, expected_s=expected)
    assert f["truncation"] is True and f["basis"] == "prompt_rate"
    assert flags(gen_s=0.4, gt_s=None, expected_s=None)["truncation"] is None
    assert expected_duration(2.0, "", "abc") is None


def test_runaway_comes_from_the_generation_record():
    assert flags(stopped_by="length_cap")["runaway"] is True
    assert flags(stopped_by="stop_head")["runaway"] is False
    assert flags(stopped_by=None)["runaway"] is None


def test_silence_is_too_little_audio_at_speech_level():
    t = np.arange(SR) / SR
    tone = 0.1 * np.sin(2 * np.pi * 200 * t)  # -23 dBFS RMS
    assert active_seconds(tone, SR) == pytest.approx(1.0)
    assert active_seconds(np.zeros(SR), SR) == 0.0
    assert active_seconds(0.001 * np.random.default_rng(0).standard_normal(SR), SR) == 0.0  # -60 dBFS hiss
    click = np.concatenate([tone[:SR // 10], np.zeros(SR)])  # 0.1 s of sound, then nothing
    assert flags(active_s=active_seconds(click, SR))["silence"] is True
    assert flags(active_s=active_seconds(tone, SR))["silence"] is False
    assert active_seconds(np.stack([tone, tone], axis=1), SR) == pytest.approx(1.0)  # channels mixed


def test_counts_only_what_could_be_decided():
    s = summarize_flags([flags(wer=2.0), flags(stopped_by=None), flags(gen_s=0.1, active_s=0.0)])
    assert (s["hallucination"], s["truncation"], s["runaway"], s["silence"], s["any"]) == (1, 1, 0, 1, 2)
    assert s["decided"]["runaway"] == 2 and s["n_utts"] == 3


# utt -> (target text, transcript, generated seconds, silent?, how generation ended)
CASES = {
    "en_ok": ("the cat sat on the mat", "the cat sat on the mat", 1.0, False, "stop_head"),
    "en_hallucinated": ("open the door", "open the the door and then we went home", 1.0, False, "stop_head"),
    "en_truncated": ("a long sentence that was cut", "a long", 0.3, False, "stop_head"),
    "en_runaway": ("stop here please", "stop here please", 1.0, False, "length_cap"),
    "en_silent": ("say something", "", 1.0, True, "stop_head"),
}


def _testset(root):
    lines = []
    for i, (utt, (text, *_)) in enumerate(CASES.items()):
        prompt = write_tone(root / "prompts" / f"{utt}.wav", 1.0, 120 + 20 * i, seed=i)
        gt = write_tone(root / "gt" / f"{utt}.wav", 1.0, 130 + 20 * i, seed=10 + i)
        lines.append(f"{utt}|A prompt text.|{prompt.relative_to(root)}|{text}|{gt.relative_to(root)}")
    (root / "meta.lst").write_text("\n".join(lines) + "\n", encoding="utf-8")
    transcripts = root / "transcripts.jsonl"
    transcripts.write_text("".join(json.dumps({"utt": u, "text": c[1]}) + "\n" for u, c in CASES.items()))
    return root / "meta.lst", transcripts


def fake_generate(items, out_dir):
    for i, it in enumerate(items):
        _, _, seconds, silent, _ = CASES[it.utt]
        if silent:
            sf.write(out_dir / f"{it.utt}.wav", np.zeros(int(seconds * SR), dtype=np.float32), SR)
        else:
            write_tone(out_dir / f"{it.utt}.wav", seconds, 140 + 10 * i, seed=30 + i)
    return {it.utt: {"stopped_by": CASES[it.utt][4], "patches": 7} for it in items}


def test_flags_in_metrics_per_utt_summary_and_report(tmp_path):
    meta, transcripts = _testset(tmp_path / "set")
    config = EvalConfig(sim="none", device="cpu", lang="en")
    m = evaluate(meta, None, tmp_path / "out", config=config, transcripts=transcripts,
                 generation={"model": "fake"}, generate_fn=fake_generate, log=lambda _: None)
    f = m["failures"]
    assert {k: f[k] for k in ("hallucination", "truncation", "runaway", "silence", "any")} == \
        {"hallucination": 1, "truncation": 1, "runaway": 1, "silence": 1, "any": 4}
    assert f["decided"]["runaway"] == 5 and m["by_lang"]["en"]["failures"]["any"] == 4
    record = json.loads((tmp_path / "out" / "wavs" / "en_runaway.gen.json").read_text())
    assert record == {"generation": {"model": "fake"}, "outcome": {"stopped_by": "length_cap", "patches": 7}}
    assert m["generation_runtime"]["torch_threads"] == torch.get_num_threads()

    with (tmp_path / "out" / "per_utt.csv").open(encoding="utf-8") as fh:
        rows = {r["utt"]: r for r in csv.DictReader(fh)}
    assert {u: r["flags"] for u, r in rows.items()} == {
        "en_ok": "", "en_hallucinated": "hallucination", "en_truncated": "truncation", "en_runaway": "runaway",
        "en_silent": "silence"}  # the silent one's empty transcript is all deletions, WER 1: not a hallucination
    assert rows["en_runaway"]["stopped_by"] == "length_cap"
    summary = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "failure flags: hallucination 1, truncation 1, runaway 1, silence 1; 4 of 5 utts flagged" in summary
    assert "## Flagged utterances (4)" in summary and "| en_runaway | runaway |" in summary

    # the same wavs again: the records still say how each ended, and nothing is regenerated
    again = evaluate(meta, tmp_path / "out" / "wavs", tmp_path / "again", config=config, transcripts=transcripts,
                     generation={"model": "fake"}, generate_fn=fake_generate, log=lambda _: None)
    assert again["n_generated"] == 0 and again["failures"]["runaway"] == 1
    assert again["generation_runtime"] is None  # nothing made here: no thread count to vouch for

    report = write_report([tmp_path / "out"], tmp_path / "report")
    md = report.read_text(encoding="utf-8")
    assert "## Failure flags (utterances)" in md and "## Flagged utterances" in md
    listed = [line for line in md.splitlines() if "_flagged.wav" in line]
    assert len(listed) == 4 and not any("en_ok" in line for line in listed)
    assert all((tmp_path / "report" / "audio" / name).is_file()
               for name in (p.split("(audio/")[1].split(")")[0] for p in listed))
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert page.count("<audio") >= 4 and "Flagged utterances" in page


def test_wavs_made_elsewhere_leave_runaway_undecided(tmp_path):
    meta, transcripts = _testset(tmp_path / "set")
    wavs = tmp_path / "mine"
    wavs.mkdir()
    fake_generate([type("It", (), {"utt": u})() for u in CASES], wavs)  # no generation records
    m = evaluate(meta, wavs, tmp_path / "out", config=EvalConfig(sim="none", device="cpu", lang="en"),
                 transcripts=transcripts, log=lambda _: None)
    assert m["failures"]["runaway"] == 0 and m["failures"]["decided"]["runaway"] == 0
    summary = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "runaway 0 (of 0 known)" in summary

"""The whole evaluation on a mini test set in Seed-TTS-Eval layout: outputs, failures, generation hook."""
import csv
import json

import pytest
import torch

from eval.__main__ import main
from eval.backends import Backends, EvalConfig
from eval.errors import EvalError, MissingWeightsError
from eval.tiny_backends import make_tiny_whisper, write_tone
from tests.helpers.testset import MINI_LINES, make_testset
from eval.normalize import normalize
from eval.run import evaluate, log_metrics
from eval.wer import count_errors

# hypotheses with known errors: en_001 one substitution; zh_001 one insertion; zh_002 written in
# traditional characters (correct once converted to simplified)
TRANSCRIPTS = {"en_001": "Hello word, it's a test.", "en_002": "Numbers like 42 stay as they are",
               "zh_001": "你好世界啊", "zh_002": "我們用AI技術"}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def setup(tmp_path):
    meta = make_testset(tmp_path / "testset" / "mini", gen_dir=tmp_path / "gen")
    tr = tmp_path / "transcripts.jsonl"
    tr.write_text("".join(json.dumps({"utt": u, "text": t}, ensure_ascii=False) + "\n"
                          for u, t in TRANSCRIPTS.items()), encoding="utf-8")
    return meta, tmp_path / "gen", tr, tmp_path


def test_cli_with_transcripts_and_resemblyzer_writes_all_outputs(setup):
    meta, gen, tr, tmp = setup
    out = tmp / "out"
    assert main(["--testset", str(meta.parent), "--wavs", str(gen), "--transcripts", str(tr),
                 "--sim", "resemblyzer", "--out", str(out), "--device", "cpu"]) == 0

    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["n_utts"] == 4
    assert m["wer"] == pytest.approx(100 * (1 / 5 + 0 + 1 / 4 + 0) / 4)  # mean of per-utt WER x100
    assert m["wer_corpus"] == pytest.approx(100 * 2 / 23, abs=1e-3)
    assert m["counts"] == {"S": 1, "D": 0, "I": 1, "N": 23}
    assert set(m["by_lang"]) == {"en", "zh"} and m["by_lang"]["zh"]["wer"] == pytest.approx(12.5)
    assert -1.0 <= m["sim"] <= 1.0
    assert m["sim_backend"]["name"] == "resemblyzer" and "Resemblyzer" in m["sim_model"]
    assert m["normalization"]["variant"] == "seedtts"
    assert m["asr"] == {"source": "transcripts", "path": str(tr)}
    assert m["testset"]["name"] == "mini" and m["versions"]["jiwer"]
    assert log_metrics(m, "mini") == {"eval/mini/wer": m["wer"], "eval/mini/wer_corpus": m["wer_corpus"],
                                      "eval/mini/sim": m["sim"], "eval/mini/duration_ratio": m["duration_ratio"]}

    with (out / "per_utt.csv").open(encoding="utf-8") as f:
        rows = {r["utt"]: r for r in csv.DictReader(f)}
    assert list(rows) == [u for u, *_ in MINI_LINES]
    r = rows["en_001"]
    assert (r["reference"], r["hypothesis"]) == ("Hello world, it's a test.", "Hello word, it's a test.")
    assert (float(r["wer"]), r["S"], r["D"], r["I"], r["N"]) == (0.2, "1", "0", "0", "5")
    assert float(r["gen_duration"]) == pytest.approx(1.0) and float(r["prompt_duration"]) == pytest.approx(1.2)
    assert rows["zh_002"]["hypothesis_norm"] == "我 们 用 A I 技 术" and float(rows["zh_002"]["wer"]) == 0
    assert rows["zh_001"]["I"] == "1"
    assert all(-1 <= float(r["sim"]) <= 1 and r["sim_model"] == m["sim_model"] for r in rows.values())

    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "**11.250**" in summary and "Resemblyzer VoiceEncoder" in summary
    assert "not comparable" in summary and "| en_001 |" in summary


def test_missing_generated_wavs_fail_and_are_listed(setup, capsys):
    meta, gen, tr, tmp = setup
    (gen / "zh_002.wav").unlink()
    (gen / "en_001.wav").unlink()
    assert main(["--testset", str(meta), "--wavs", str(gen), "--transcripts", str(tr), "--sim", "none",
                 "--out", str(tmp / "out")]) == 2
    err = capsys.readouterr().err
    assert "2 of 4 generated wavs missing" in err and "en_001" in err and "zh_002" in err
    assert not (tmp / "out" / "metrics.json").exists()
    # a subset that has its wavs is fine
    m = evaluate(meta, gen, tmp / "out2", transcripts=tr, utts=["en_002", "zh_001"],
                 config=EvalConfig(sim="none", device="cpu"))
    assert m["n_utts"] == 2 and m["sim"] is None


def test_results_are_not_overwritten(setup):
    meta, gen, tr, tmp = setup
    config = EvalConfig(sim="none", device="cpu")
    evaluate(meta, gen, tmp / "out", transcripts=tr, config=config)
    with pytest.raises(EvalError, match="exists"):
        evaluate(meta, gen, tmp / "out", transcripts=tr, config=config)
    evaluate(meta, gen, tmp / "out", transcripts=tr, config=config, overwrite=True)


def test_bad_transcripts_and_unscorable_references(setup):
    meta, gen, tr, tmp = setup
    config = EvalConfig(sim="none", device="cpu")
    partial = tmp / "partial.jsonl"
    partial.write_text(json.dumps({"utt": "en_001", "text": "x"}) + "\nnot json\n", encoding="utf-8")
    with pytest.raises(EvalError, match="line 2: not JSON"):
        evaluate(meta, gen, tmp / "o1", transcripts=partial, config=config)
    partial.write_text(json.dumps({"utt": "en_001", "text": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(EvalError, match="no transcript for 3 utts"):
        evaluate(meta, gen, tmp / "o2", transcripts=partial, config=config)
    lines = meta.read_text(encoding="utf-8").splitlines()
    lines[0] = lines[0].replace("Hello world, it's a test.", "?!")
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(EvalError, match="nothing left to score"):
        evaluate(meta, gen, tmp / "o3", transcripts=tr, config=config)


def test_generation_hook_is_resumable_and_runs_after_the_weight_check(setup):
    meta, _, tr, tmp = setup
    calls = []

    def fake_generate(items, out_dir):
        calls.append([it.utt for it in items])
        for i, it in enumerate(items):
            write_tone(out_dir / f"{it.utt}.wav", 0.8, 150 + 10 * i)

    config = EvalConfig(sim="none", device="cpu")
    gen = {"model": "toy", "cfg": 2.0}
    m = evaluate(meta, None, tmp / "r1", config=config, transcripts=tr, generation=gen, generate_fn=fake_generate)
    assert calls == [[u for u, *_ in MINI_LINES]] and m["n_generated"] == 4 and m["generation"] == gen
    assert (tmp / "r1" / "wavs" / "en_001.gen.json").is_file()
    wavs = tmp / "r1" / "wavs"
    evaluate(meta, wavs, tmp / "r2", config=config, transcripts=tr, generation=gen, generate_fn=fake_generate)
    assert len(calls) == 1  # everything current: nothing regenerated
    (wavs / "zh_001.wav").unlink()
    evaluate(meta, wavs, tmp / "r3", config=config, transcripts=tr, generation=gen, generate_fn=fake_generate)
    assert calls[-1] == ["zh_001"]
    evaluate(meta, wavs, tmp / "r4", config=config, transcripts=tr, generation={**gen, "cfg": 3.0},
             generate_fn=fake_generate)
    assert len(calls[-1]) == 4  # other settings: all regenerated

    n_calls = len(calls)
    with pytest.raises(MissingWeightsError, match="wespeaker"):
        evaluate(meta, None, tmp / "r5", config=EvalConfig(sim="wespeaker", device="cpu"), transcripts=tr,
                 generation=gen, generate_fn=fake_generate)
    assert len(calls) == n_calls  # failed before generating anything


def test_whisper_asr_end_to_end_and_backends_loaded_once(setup):
    meta, gen, _, tmp = setup
    ckpt = make_tiny_whisper(tmp / "whisper.pt")
    backends = Backends(EvalConfig(whisper=str(ckpt), sim="none", device="cpu", asr_batch_size=2))
    m = evaluate(meta, gen, tmp / "w1", backends=backends, utts=["en_001", "en_002"])
    assert m["asr"]["en"]["name"] == "openai-whisper" and m["asr"]["en"]["checkpoint"] == str(ckpt)
    with (tmp / "w1" / "per_utt.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:  # the stored WER is the one of the stored texts
        c = count_errors(normalize(r["reference"], "en"), normalize(r["hypothesis"], "en", hypothesis=True))
        assert float(r["wer"]) == pytest.approx(c.wer, abs=1e-4) and int(r["N"]) == c.N
    asr = backends.asr("en")
    evaluate(meta, gen, tmp / "w2", backends=backends, utts=["en_001"])
    assert backends.asr("en") is asr


def test_cli_check_and_usage(setup, tmp_path, monkeypatch, capsys):
    meta, gen, tr, tmp = setup
    assert main(["--testset", str(meta), "--check", "--transcripts", str(tr), "--sim", "none"]) == 0
    assert "ok: 4 utts (en, zh)" in capsys.readouterr().out
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["--testset", str(meta), "--check", "--utts", "en_001", "--sim", "none", "--whisper", "large-v3"]) == 2
    assert "large-v3.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--testset", str(meta)])  # neither --wavs nor --model

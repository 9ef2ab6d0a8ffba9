"""`python -m eval.reporting.report` on fixture run folders: tables match the inputs, the paper's numbers sit in
the right rows, missing results are shown as missing, the HTML is self-contained."""
import json
import re

import pytest

from eval.reporting.report import (MISSING, ReportError, ablation_tables, collect, column_of, main, main_table,
                         results_table, write_report)
from tests.helpers.report_fixtures import make_run, write_eval

HEAD = ["EN WER", "EN SIM", "ZH CER", "ZH SIM", "hard CER", "hard SIM"]


def row_of(table, first, second=None):
    rows = [r for r in table.rows if r[0] == first and (second is None or r[1].startswith(second))]
    assert len(rows) == 1, f"{first} {second}: {rows}"
    return dict(zip(table.headers, rows[0]))


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    base = make_run(root, "d256s9", {"en": {100: (10.0, 0.50), 200: (8.0, 0.55)}, "zh": {200: (12.0, 0.60)},
                                     "zh_hardcase": {200: (30.0, 0.40)}}, wavs=False)
    d4 = make_run(root, "d4s9", {"en": {200: (9.5, None)}}, wavs=False)  # SIM not scored, no zh/hard
    (d4 / "eval" / "zh" / "step_200").mkdir(parents=True)  # an evaluation that never finished
    return root, base, d4


def test_main_and_ablation_tables_match_inputs(runs):
    _, base, d4 = runs
    entries = collect([base, d4])
    main_t = main_table(entries)
    voxcpm = row_of(main_t, "VoxCPM (paper)")
    assert [voxcpm[h] for h in HEAD] == ["1.85", "72.9", "0.93", "77.2", "8.87", "73.0"]
    assert (voxcpm["params"], voxcpm["data (h)"]) == ("0.5B", "1.8M")
    assert row_of(main_t, "MaskGCT (paper)")["hard CER"] == MISSING  # empty in the paper's CSV

    ours = row_of(main_t, "d256s9/version_0 (ours)")
    # latest step (200) of each test set; SIM x100; zh_hardcase is the hard column
    assert [ours[h] for h in HEAD] == ["8.00", "55.0", "12.00", "60.0", "30.00", "40.0"]
    assert (ours["params"], ours["data (h)"], ours["step"]) == ("5.0K", "1", "200")  # Linear(100, 50); 2 x 0.5 h
    assert "resemblyzer" in ours["SIM model"] and "not comparable" in ours["SIM model"]
    d4_row = row_of(main_t, "d4s9/version_0 (ours)")
    assert [d4_row[h] for h in HEAD] == ["9.50"] + [MISSING] * 5  # missing, never 0
    assert not any(c in ("0", "0.0", "0.00") for c in d4_row.values())

    (abl,) = ablation_tables(entries)
    assert abl.title == "Ablations (scale tiny)"
    assert [r[:2] for r in abl.rows] == [["d256s9", "ours: d256s9/version_0"],
                                         ["d256s9", "paper: default setting (w/ FSQ: d256s9)"],
                                         ["d4s9", "ours: d4s9/version_0"], ["d4s9", "paper: w/ FSQ: d4s9"]]
    ours_d4, paper_d4 = row_of(abl, "d4s9", "ours"), row_of(abl, "d4s9", "paper")
    assert (ours_d4["EN WER"], ours_d4["Δ EN WER"]) == ("9.50", "+1.50")  # against our d256s9
    assert ours_d4["EN SIM"] == ours_d4["Δ EN SIM"] == ours_d4["ZH CER"] == MISSING
    assert (paper_d4["EN WER"], paper_d4["Δ EN WER"]) == ("5.18", "+2.20")  # 5.18 - 2.98
    assert (paper_d4["ZH SIM"], paper_d4["Δ ZH SIM"]) == ("68.0", "-2.4")  # 68.0 - 70.4
    assert paper_d4["SIM model"] == "WavLM-ECAPA (paper)"

    res = results_table(entries)
    assert [(r[0], r[1], r[3]) for r in res.rows] == [
        ("d256s9/version_0", "en", "200"), ("d256s9/version_0", "zh", "200"),
        ("d256s9/version_0", "zh_hardcase", "200"), ("d4s9/version_0", "en", "200")]
    assert any("step_200: no metrics.json" in n for e in entries for n in e.notes)


def test_write_report_markdown_html_and_figures(runs, tmp_path):
    _, base, d4 = runs
    out = tmp_path / "report"
    md_path = write_report([base, d4], out)
    md = md_path.read_text(encoding="utf-8")
    assert "| VoxCPM (paper) | 0.5B | 1.8M | — | 1.85 | 72.9 | 0.93 | 77.2 | 8.87 | 73.0 |" in md
    assert "| d4s9/version_0 (ours) | 5.0K | 1 | 200 | 9.50 | — | — | — | — | — | not scored |" in md
    assert "not comparable" in md and "no metrics.json" in md
    pngs = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert {"eval_wer.png", "eval_sim.png", "loss_train_loss.png", "loss_val_flow_loss.png"} <= set(pngs)
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "loss_lr_AdamW.png").exists()  # only losses are plotted
    # train/flow/loss and train/flow_loss share a slug: two files, not one overwritten
    assert {"loss_train_flow_loss.png", "loss_train_flow_loss2.png"} <= set(pngs)
    assert (out / "loss_train_flow_loss.png").read_bytes() != (out / "loss_train_flow_loss2.png").read_bytes()

    page = (out / "report.html").read_text(encoding="utf-8")
    srcs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]+)""", page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)  # nothing external
    assert len(srcs) == len(pngs) and "<link" not in page and "<script" not in page
    assert "<td>1.85</td><td>72.9</td>" in page and "<td>9.50</td><td>—</td>" in page


def test_sweep_folder_with_a_failed_experiment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # sweep.json holds run paths relative to the sweep's working folder
    root = tmp_path / "runs"
    make_run(root, "d256s9", {"en": {300: (5.0, 0.6)}}, wavs=False)
    d128 = make_run(root, "d128s9", {"en": {300: (4.0, 0.7)}}, wavs=False)
    record = root / "sweeps" / "fsq-tiny"
    record.mkdir(parents=True)
    (record / "sweep.json").write_text(json.dumps({"sweep": "fsq", "scale": "tiny", "overrides": [], "results": {
        "d256s9": {"run": "runs/d256s9/version_0", "state": "finished"},
        "d128s9": {"run": str(d128), "state": "finished"},
        "d4s9": {"run": None, "state": "failed", "error": "RuntimeError('boom')"}}}))
    monkeypatch.chdir(tmp_path.parent)  # the report runs elsewhere: paths are found from the record
    (abl,) = ablation_tables(collect([record]))
    assert [r[0] for r in abl.rows] == ["d256s9", "d256s9", "d4s9", "d4s9", "d128s9", "d128s9"]  # paper order
    ours = row_of(abl, "d128s9", "ours")
    assert (ours["EN WER"], ours["Δ EN WER"], ours["EN SIM"], ours["Δ EN SIM"]) == ("4.00", "-1.00", "70.0", "+10.0")
    failed = row_of(abl, "d4s9", "ours")
    assert [failed[h] for h in HEAD] == [MISSING] * 6 and failed["step"] == MISSING
    assert row_of(abl, "d4s9", "paper")["EN WER"] == "5.18"

    out = tmp_path / "out"
    assert main(["--runs", str(record / "sweep.json"), "--out", str(out)]) == 0
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "d4s9 has no run folder (state failed, RuntimeError('boom'))" in md


def test_eval_folder_and_checkpoint_inputs(runs, tmp_path):
    _, base, _ = runs
    bare = write_eval(tmp_path / "evals" / "en_20250101", "en", 3.0, 0.7, wavs=False)
    (base / "checkpoints").mkdir()
    (base / "checkpoints" / "step_0000100.ckpt").write_bytes(b"")
    step_dir = base / "eval" / "zh" / "step_200"
    e_bare, e_ckpt, e_step = collect([bare, base / "checkpoints" / "step_0000100.ckpt", step_dir])
    assert e_bare.label == "evals/en_20250101"
    assert [(r.testset, r.step) for r in e_bare.results] == [("en", None)]
    assert [(r.testset, r.step) for r in e_ckpt.results] == [("en", 100)]  # only that checkpoint's step
    assert [(r.testset, r.step) for r in e_step.results] == [("zh", 200)] and e_step.experiment == "d256s9"
    t = main_table([e_bare, e_ckpt])
    assert row_of(t, "evals/en_20250101 (ours)")["EN WER"] == "3.00"
    assert row_of(t, "evals/en_20250101 (ours)")["params"] == MISSING
    assert row_of(t, "d256s9/version_0:step_0000100 (ours)")["EN WER"] == "10.00"


def test_bad_inputs_fail_clearly(tmp_path, capsys):
    with pytest.raises(ReportError, match="not found"):
        collect([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    assert main(["--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no run (config.yaml), sweep (sweep.json) or evaluation" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.json").write_text("{not json")
    with pytest.raises(ReportError, match="bad/metrics.json"):
        collect([bad])


@pytest.mark.parametrize("name,col", [("en", "en"), ("test-en", "en"), ("zh", "zh"), ("zh_hardcase", "hard"),
                                      ("hard", "hard"), ("mini", None), ("english", None)])
def test_column_of(name, col):
    assert column_of(name) == col


def test_samples_are_players_beside_ground_truth_and_prompt(tmp_path):
    from eval.tiny_backends import write_tone

    testset = tmp_path / "seedtts" / "en"
    lines = []
    for i, utt in enumerate(["en_001", "en_002"]):
        write_tone(testset / "prompt-wavs" / f"{utt}_p.wav", 0.3, 150 + i, seed=i)
        write_tone(testset / "wavs" / f"{utt}.wav", 0.3, 170 + i, seed=i)
        lines.append(f"{utt}|prompt words|prompt-wavs/{utt}_p.wav|target words {i}|wavs/{utt}.wav")
    (testset / "meta.lst").write_text("\n".join(lines) + "\n")
    folder = write_eval(tmp_path / "evals" / "en_x", "en", 20.0, 0.6)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["testset"]["path"] = str(testset / "meta.lst")
    (folder / "metrics.json").write_text(json.dumps(metrics))

    md = write_report([folder], tmp_path / "report", samples_per_testset=1)
    page = (md.parent / "report.html").read_text()
    assert page.count("<audio controls") == 3  # generated, ground truth, prompt of one utterance
    text = md.read_text()
    assert "target words 0" in text and "target words 1" not in text
    linked = re.findall(r"\(audio/([^)]+\.wav)\)", text)
    assert len(linked) == 3 and all((md.parent / "audio" / name).is_file() for name in linked)
    assert "<audio" not in (write_report([folder], tmp_path / "plain").parent / "report.html").read_text()


def test_seed_intervals_and_marked_differences(tmp_path):
    from tests.helpers.report_fixtures import write_seed_evals

    base_wer = {s: {f"u{i}": 5.0 + 3 * i + s for i in range(8)} for s in (0, 1, 2)}  # utterances and seeds vary
    shifted = {s: {u: w + 4.0 for u, w in g.items()} for s, g in base_wer.items()}
    runs = {}
    for name, exp, wers, overrides in [("base", "d256s9", base_wer, ()), ("worse", "d4s9", shifted, ()),
                                       ("base2", "d256s9", base_wer, ("x=1",)), ("same", "d4s9", base_wer, ("x=1",))]:
        runs[name] = make_run(tmp_path / name, exp, {}, overrides=overrides, wavs=False)
        write_seed_evals(runs[name] / "eval" / "en" / "step_200", "en", wers)
    tables = {t.title: t for t in ablation_tables(collect(list(runs.values())))}
    shifted_row = row_of(tables["Ablations (scale tiny)"], "d4s9", "ours")
    base_row = row_of(tables["Ablations (scale tiny)"], "d256s9", "ours")
    same_row = row_of(tables["Ablations (scale tiny, overrides x=1)"], "d4s9", "ours")
    assert re.fullmatch(r"16\.50 \[\d+\.\d\d, \d+\.\d\d\]", base_row["EN WER"])  # mean 5 + 3 * 3.5 + 1 (seeds 0-2), interval
    low, high = map(float, re.findall(r"\d+\.\d\d", base_row["EN WER"])[1:])
    assert low < 16.5 < high
    assert shifted_row["Δ EN WER"] == "+4.00 [+4.00, +4.00]*"  # every paired utterance and seed 4 points worse
    assert same_row["Δ EN WER"] == "+0.00 [+0.00, +0.00]" and not same_row["Δ EN WER"].endswith("*")
    assert any("excludes zero" in n for n in tables["Ablations (scale tiny)"].notes)
    # the paper's d4s9 is worse than its d256s9 (WER +2.20, SIM -3.3): WER reproduced, SIM not scored here
    assert "EN WER: 1 of 1 of the paper's deltas reproduced in sign with an interval excluding zero (d4s9)." \
        in tables["Ablations (scale tiny)"].notes
    assert "EN WER: 0 of 1 of the paper's deltas reproduced in sign with an interval excluding zero." \
        in tables["Ablations (scale tiny, overrides x=1)"].notes
    res = {r[0]: dict(zip(results_table(collect([runs["base"]])).headers, r))
           for r in results_table(collect([runs["base"]])).rows}
    assert res["d256s9/version_0"]["seeds"] == "0, 1, 2" and res["d256s9/version_0"]["WER"] == base_row["EN WER"]
    md = write_report([runs["base"], runs["worse"]], tmp_path / "report").read_text(encoding="utf-8")
    assert "+4.00 [+4.00, +4.00]*" in md

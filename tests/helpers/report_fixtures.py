"""Fake run folders for the report and notebook tests: config.yaml, status.json, csv/metrics.csv and
eval/<testset>/step_<N>/ with metrics.json, per_utt.csv and short wavs, shaped like the real ones."""
import csv
import json
from pathlib import Path

from eval.tiny_backends import write_tone
from eval.run import CSV_FIELDS

UTTS = {"en": ["en_001", "en_002"], "zh": ["zh_001", "zh_002"], "zh_hardcase": ["hard_001"]}


def write_eval(folder: Path, testset: str, wer: float, sim: float | None, wavs: bool = True,
               per_utt: dict | None = None, seed: int = 0) -> Path:
    """metrics.json (wer x100, sim as a cosine), per_utt.csv (`per_utt`: utt -> WER x100, else `wer` for
    each) and, optionally, one wav per utterance."""
    folder.mkdir(parents=True, exist_ok=True)
    utts = list(per_utt) if per_utt else UTTS.get(testset, ["u_001", "u_002"])
    if wavs:
        for i, utt in enumerate(utts):
            write_tone(folder / "wavs" / f"{utt}.wav", 0.4, 120 + 40 * i + wer, seed=i)
    backend = None if sim is None else {"name": "resemblyzer", "model": "Resemblyzer GE2E",
                                        "comparable_to_seed_tts_eval": False}
    metrics = {"n_utts": len(utts), "wer": wer, "wer_corpus": wer + 0.5,
               "counts": {"S": 1, "D": 0, "I": 0, "N": 20}, "sim": sim,
               "by_lang": {}, "testset": {"path": f"/data/{testset}/meta.lst", "name": testset},
               "wavs_dir": str(folder / "wavs"), "normalization": {"variant": "seedtts"},
               "asr": {"source": "transcripts", "path": "/data/transcripts.jsonl"},
               "sim_backend": backend, "sim_model": backend and backend["model"],
               "generation": {"cfg": 2.0, "timesteps": 10, "temperature": 1.0, "seed": seed}}
    (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    with (folder / "per_utt.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for utt in utts:
            writer.writerow({"utt": utt, "lang": testset[:2], "reference": f"text of {utt}",
                             "hypothesis": f"heard {utt}", "wer": f"{(per_utt or {}).get(utt, wer) / 100:.4f}", "sim": sim or ""})
    return folder


def write_seed_evals(folder: Path, testset: str, wers: dict, sim: float | None = None) -> Path:
    """A several-seed evaluation (eval/seeds.py's layout): `wers` is seed -> utt -> WER x100."""
    from eval.seeds import combine, seed_dir

    per_seed = {}
    for s, per_utt in wers.items():
        write_eval(seed_dir(folder, s), testset, sum(per_utt.values()) / len(per_utt), sim, wavs=False,
                   per_utt=per_utt, seed=s)
        per_seed[s] = json.loads((seed_dir(folder, s) / "metrics.json").read_text(encoding="utf-8"))
    (folder / "metrics.json").write_text(json.dumps(combine(folder, list(wers), per_seed)), encoding="utf-8")
    return folder


def make_run(root: Path, exp: str, results: dict, version: int = 0, scale: str = "tiny",
             overrides=(), state: str = "finished", hours: float = 1.0, wavs: bool = True) -> Path:
    """`results`: {testset: {step: (wer, sim)}}. The model node is a Linear(100, 50): 5050 params."""
    run = root / exp / f"version_{version}"
    run.mkdir(parents=True)
    manifest = root / f"{exp}_train.jsonl"
    manifest.write_text("".join(json.dumps({"utt": f"u{i}", "audio": "x.wav", "text": "t",
                                            "duration": hours * 1800}) + "\n" for i in range(2)))
    config = {"experiment": exp, "scale": scale, "overrides": list(overrides),
              "data": {"train_manifest": str(manifest)},
              "model": {"_target_": "torch.nn.Linear", "in_features": 100, "out_features": 50}}
    (run / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    (run / "status.json").write_text(json.dumps({"state": state}))
    (run / "csv").mkdir()
    lines = ["epoch,step,train/loss,train/flow/loss,train/flow_loss,val/flow/loss,lr-AdamW"]
    for step in range(0, 50, 10):
        lines.append(f"0,{step},{2.0 - step / 50},{1.5 - step / 60},{3 - step / 20},,0.001")
        lines.append(f"0,{step},,,,{1.6 - step / 70},")
    (run / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    for testset, steps in results.items():
        for step, (wer, sim) in steps.items():
            write_eval(run / "eval" / testset / f"step_{step}", testset, wer, sim, wavs=wavs)
    return run

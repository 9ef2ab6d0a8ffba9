"""`make demo`: the whole path on one CPU - data, tiny VAE, latent cache, tiny d256s9 backbone,
Seed-TTS-Eval on the embedded mini test set, report.

Each stage is skipped when its result is already there (a finished run of the same experiment
and scale, an evaluation folder with metrics.json), so re-running continues where it stopped.
WER needs ASR weights (whisper / paraformer), which cannot be downloaded here: without them it
is reported as unavailable, with the reason, and SIM uses resemblyzer (weights ship in its
wheel). For the generated held-out sentences the ground truth exists (the same sentence by the
same voice, rendered by the deterministic corpus), so the demo also reports mel-cepstral
distortion after DTW alignment.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DATA = Path("data/corpus")
RUNS = "runs"


def _finished_run(exp: str, scale: str) -> Path | None:
    from voxlab.runs import list_runs, read_status
    from voxlab.config import load_run_config

    for run in reversed(list_runs(RUNS, exp)):
        if read_status(run).get("state") == "finished" and load_run_config(run).get("scale") == scale:
            return run
    return None


def _train_or_reuse(exp: str, scale: str, overrides: list[str]) -> Path:
    from voxlab.train import train

    run = _finished_run(exp, scale)
    if run is not None:
        print(f"[demo] reusing finished {exp} run {run}")
        return run
    return train(exp, scale, overrides)


def _mcd_rows(meta: Path, wavs: Path) -> list[dict]:
    """MCD of every generated wav against the test set's ground-truth wav (5th meta.lst field)."""
    from eval.mcd import mcd
    from voxlab.audio import load_audio

    rows = []
    for line in meta.read_text(encoding="utf-8").splitlines():
        fields = line.split("|")
        if len(fields) < 5 or not (wavs / f"{fields[0]}.wav").is_file():
            continue
        ref = load_audio(meta.parent / fields[4], 16000)
        gen = load_audio(wavs / f"{fields[0]}.wav", 16000)
        rows.append({"utt": fields[0], "mcd_db": round(mcd(ref, gen), 3)})
    return rows


def _evaluate(run: Path, lang: str, limit: int | None) -> dict:
    from eval.backends import EvalConfig, asr_available
    from eval.generate import model_generate_fn
    from eval.run import evaluate
    from voxlab.checkpoint import load_checkpoint

    ckpt = run / "checkpoints" / "last.ckpt"
    step = load_checkpoint(ckpt)["global_step"]
    meta = DATA / "seedtts" / lang / "meta.lst"
    out = run / "eval" / lang / f"step_{step}"
    if (out / "metrics.json").is_file():
        print(f"[demo] reusing {out}")
        return json.loads((out / "metrics.json").read_text())
    config = EvalConfig(sim="resemblyzer", device="cpu")
    ok, reason = asr_available(config, [lang])
    if not ok:
        print(f"[demo] WER unavailable: {reason}")
    settings = {"cfg": 2.0, "timesteps": 10, "temperature": 1.0, "seed": 0}
    metrics = evaluate(meta, None, out, config=config, limit=limit, generation={"model": str(ckpt), **settings},
                       generate_fn=model_generate_fn(ckpt, settings), skip_asr=None if ok else reason)
    rows = _mcd_rows(meta, out / "wavs")
    if rows:
        metrics["mcd_db"] = round(sum(r["mcd_db"] for r in rows) / len(rows), 3)
        metrics["mcd_per_utt"] = rows
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return metrics


def run_demo(limit: int | None = 8, vae_steps: int = 150, tts_steps: int = 300) -> dict:
    from datamodules.corpus import build_corpus

    times: dict[str, float] = {}

    def stage(name, fn):
        print(f"\n[demo] ---- {name} ----", flush=True)
        start = time.time()
        out = fn()
        times[name] = round(time.time() - start, 1)
        print(f"[demo] {name}: {times[name]} s", flush=True)
        return out

    stage("data", lambda: build_corpus(DATA))
    vae = stage("tiny VAE", lambda: _train_or_reuse(
        "audiovae", "tiny", [f"trainer.max_steps={vae_steps}", f"module.warmup_steps={vae_steps * 2 // 3}"]))
    common = [f"vae.path={vae}"]

    def cache():
        from datamodules.tts import ensure_caches
        from voxlab.config import compose

        return ensure_caches(compose("d256s9", "tiny", common))

    stage("latent cache", cache)
    tts = stage("tiny d256s9 backbone", lambda: _train_or_reuse("d256s9", "tiny", common + [f"trainer.max_steps={tts_steps}"]))
    results = {lang: stage(f"eval {lang}", lambda lang=lang: _evaluate(tts, lang, limit)) for lang in ("en", "zh")}

    def report():
        from eval.report import write_report

        return write_report([tts], Path(RUNS) / "demo" / "report")

    report_md = stage("report", report)
    summary = {"stage_seconds": times, "total_seconds": round(sum(times.values()), 1), "vae_run": str(vae),
               "tts_run": str(tts), "report": str(report_md),
               "results": {lang: {k: m.get(k) for k in ("sim", "sim_model", "wer", "wer_unavailable", "mcd_db", "n_utts")}
                           for lang, m in results.items()}}
    (Path(RUNS) / "demo" / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n[demo] stage times (s): " + ", ".join(f"{k} {v}" for k, v in times.items()))
    for lang, r in summary["results"].items():
        wer = r["wer"] if r["wer"] is not None else f"unavailable ({r['wer_unavailable']})"
        print(f"[demo] {lang}: SIM {r['sim']} ({r['sim_model']}), MCD {r['mcd_db']} dB, WER {wer}")
    print(f"[demo] report: {report_md} (and report.html beside it)")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=8, help="test utterances per language (0: all 16)")
    parser.add_argument("--vae-steps", type=int, default=150, help="tiny VAE generator steps")
    parser.add_argument("--tts-steps", type=int, default=300, help="tiny d256s9 training steps")
    args = parser.parse_args(argv)
    run_demo(args.limit or None, args.vae_steps, args.tts_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())

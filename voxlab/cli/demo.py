"""`make demo`: the whole path on one CPU - data, tiny VAE, latent cache, tiny d256s9 backbone
(evaluated while it trains), Seed-TTS-Eval on the whole embedded mini test set, report.

The tiny AudioVAE: by default the demo starts from the one that VoxLab trained and the repository
ships (`assets/tiny_audiovae/`, reproduced by the command in its README.md), because the VAE
recipe needs more than the demo's budget to keep speech intelligible; `--train-vae` trains it here
instead. The backbone is always trained from scratch.

Each stage is skipped when its result is already there (a finished run of the same experiment,
scale and settings, an evaluation folder with metrics.json), so re-running continues where it
stopped. The backbone trains on the English half of the corpus and is evaluated in English (`LANGS`;
the budget's targets are English), on the plain mini test set and on its hard cases (`en_hard`:
repeated words, tongue twisters, long sentences by the same voices). English WER uses whisper-large-v3 when its checkpoint is in
whisper's cache, else the whisper tiny.en that `make install` brings (faster-whisper; the result
names the model, and its WER is not comparable with large-v3's). With "zh" in `LANGS`, Chinese CER
needs a paraformer-zh folder (`--paraformer` or $VOXLAB_PARAFORMER).
For the held-out sentences the ground truth exists (the same sentence by the same voice, rendered
by the deterministic corpus), so the demo also reports mel-cepstral distortion after DTW alignment
and the generated / ground-truth duration ratio (does the stop head fire at the right time).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from datamodules.corpus.build import build_corpus
from datamodules.tts import ensure_caches
from eval.backends import EvalConfig, asr_skip_reason
from eval.generate import model_generate_fn, reference_generate_fn
from eval.metrics.mcd import mcd
from eval.reporting.report import write_report
from eval.run import evaluate
from eval.sim import cosine
from eval.sim.resemblyzer_sim import ResemblyzerSim
from eval.testset import read_testset
from voxlab.audio import load_audio
from voxlab.checkpoint import load_checkpoint
from voxlab.cli.tiny_vae import export_with_stats
from voxlab.cli.train import train
from voxlab.config import compose
from voxlab.runs import find_run, last_checkpoint

DATA = Path("data/corpus")
RUNS = "runs"
SHIPPED_VAE = Path(__file__).resolve().parents[2] / "assets" / "tiny_audiovae"
# Guidance 4, not the official 2.0: the tiny backbone's condition is weak, and stronger guidance
# made its speech clearer (docs/demo.md, 2026-12-07: tiny.en WER 145 / 111 / 97 at cfg 2 / 4 / 6 on
# 8 test utterances; 86 / 90 at cfg 4 / 6 on all 16 with the English-only model).
EVAL_SETTINGS = {"cfg": 4.0, "timesteps": 10, "temperature": 1.0, "seed": 0}


NUM_UTTS = 4000  # 3.2 h of speech, about 20 s to render; 3740 training utterances
# The tiny backbone's levers (docs/demo.md, 2026-12-07): phonemes; guided attention; patch j at rotary
# position 1.5 j beside the text it speaks (the stop head then times 8 of 8 test utterances within 25%);
# flow times drawn nearer the noise end, where the LM's condition matters most; the phone loss, which
# makes the backbone read its text (docs/demo.md); English only: the budget's target, twice the
# English per step. No text-LM init.
TTS_STEPS = 2100  # 2000 steps took 20 min 41 s before the ASR left the training process (docs/demo.md)
EVAL_EVERY = 1050  # the curve: steps 1050 and 2100 on 8 English test utterances
DATA_RECIPE = ["data.langs=[en]"]
LANGS = ("en",)  # the languages trained and evaluated
EVAL_SETS = LANGS + tuple(f"{lang}_hard" for lang in LANGS)  # each language's plain and hard-case test sets
BACKBONE_RECIPE = ["text.kind=phoneme", "model.lm_init.mode=none", "model.align.heads=1",
                   "model.audio_positions=1.5", "model.flow.t_mean=1.0", "model.phones.classes=128", *DATA_RECIPE]


def configure(data: str, runs: str, num_utts: int = NUM_UTTS) -> None:
    """Where the demo's corpus and runs live (module-level, as every stage reads them)."""
    global DATA, RUNS, NUM_UTTS
    DATA, RUNS, NUM_UTTS = Path(data), str(runs), int(num_utts)


def _finished_run(exp: str, scale: str, overrides: list[str]) -> Path | None:
    """The newest finished run of `exp` at `scale` trained with exactly these overrides."""
    return find_run(RUNS, exp, scale, overrides, finished=True)


def _train_or_reuse(exp: str, scale: str, overrides: list[str]) -> Path:
    run = _finished_run(exp, scale, overrides)
    if run is not None:
        print(f"[demo] reusing finished {exp} run {run}")
        return run
    return train(exp, scale, overrides)


def _mcd_rows(meta: Path, wavs: Path) -> list[dict]:
    """MCD of every generated wav against the test set's ground-truth wav (5th meta.lst field)."""
    rows = []
    for item in read_testset(meta):
        gen = wavs / f"{item.utt}.wav"
        if item.gt_wav is None or not gen.is_file():
            continue
        rows.append({"utt": item.utt, "mcd_db": round(mcd(load_audio(item.gt_wav, 16000), load_audio(gen, 16000)), 3)})
    return rows


def _cosine_to_original(meta: Path, wavs: Path) -> float | None:
    """Mean resemblyzer cosine of each generated wav to the test set's own wav of that utterance:
    how much of the voice the VAE's resynthesis keeps (the VAE recipe's target, >= 0.85)."""
    sim, values = ResemblyzerSim(), []
    for item in read_testset(meta):
        gen = wavs / f"{item.utt}.wav"
        if item.gt_wav is not None and gen.is_file():
            values.append(cosine(sim.embed(load_audio(gen, 16000)), sim.embed(load_audio(item.gt_wav, 16000))))
    return round(sum(values) / len(values), 4) if values else None


def _eval_config(paraformer: str | None):
    # DNSMOS from the speechmos wheel: a predicted speech-quality MOS (not naturalness, not UTMOS);
    # asr=auto: the demo goes on without WER where the ASR weights are missing, and says why
    return EvalConfig(asr="auto", sim="resemblyzer", mos="dnsmos", device="cpu", paraformer=paraformer)


def _evaluate(run: Path, testset: str, limit: int | None, paraformer: str | None) -> dict:
    lang = testset.split("_")[0]
    ckpt = last_checkpoint(run)
    step = load_checkpoint(ckpt)["global_step"]
    meta = DATA / "seedtts" / testset / "meta.lst"
    out = run / "eval" / testset / f"final_step_{step}"
    if (out / "metrics.json").is_file():
        print(f"[demo] reusing {out}")
        return json.loads((out / "metrics.json").read_text())
    config = _eval_config(paraformer)
    reason = asr_skip_reason(config, [lang])
    if reason:
        print(f"[demo] {lang}: WER/CER unavailable: {reason}")
    metrics = evaluate(meta, None, out, config=config, limit=limit, generation={"model": str(ckpt), **EVAL_SETTINGS},
                       generate_fn=model_generate_fn(ckpt, EVAL_SETTINGS))
    rows = _mcd_rows(meta, out / "wavs")
    if rows:
        metrics["mcd_db"] = round(sum(r["mcd_db"] for r in rows) / len(rows), 3)
        metrics["mcd_per_utt"] = rows
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return metrics


def _evaluate_reference(vae: Path | None, lang: str, limit: int | None, paraformer: str | None) -> dict:
    """The test set's ground truth (vae None) or its resynthesis through the VAE, scored as the
    model is: the floor of the protocol and the ceiling a backbone decoded by that VAE reaches."""
    name = "ground_truth" if vae is None else "vae_resynthesis"
    out = Path(RUNS) / "demo" / name / lang
    if (out / "metrics.json").is_file():
        done = json.loads((out / "metrics.json").read_text())
        if done.get("generation", {}).get("vae") == (None if vae is None else str(vae)):
            return done
        out = out.parent / f"{lang}_{int(time.time())}"  # another VAE: a new folder, nothing overwritten
    meta = DATA / "seedtts" / lang / "meta.lst"
    metrics = evaluate(meta, None, out, config=_eval_config(paraformer), limit=limit,
                       generation={"reference": name, "vae": None if vae is None else str(vae)},
                       generate_fn=reference_generate_fn(vae))
    if vae is not None:
        metrics["cosine_to_original"] = _cosine_to_original(meta, out / "wavs")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return metrics


def _asr_name(metrics: dict, lang: str) -> str | None:
    asr = (metrics.get("asr") or {}).get(lang) or {}
    if not asr.get("name"):
        return None
    return f"{asr['name']} {asr.get('model', '')}".strip()


def tts_overrides(vae: Path, steps: int | None, eval_every: int, paraformer: str | None,
                  data: Path | None = None) -> list[str]:
    """The backbone's settings in the demo: the tiny recipe, plus Seed-TTS-Eval every `eval_every`
    steps on the first 8 utterances of the English test set (the learning curves of the report)."""
    out = [f"vae.path={vae}", *BACKBONE_RECIPE]
    if steps:
        out.append(f"trainer.max_steps={steps}")
    if eval_every > 0:
        out += ["callbacks.seedtts_eval._target_=callbacks.evaluation.SeedTTSEvalCallback",
                f"callbacks.seedtts_eval.every_n_steps={eval_every}", "callbacks.seedtts_eval.limit=8",
                f"callbacks.seedtts_eval.cfg={EVAL_SETTINGS['cfg']}"]
        if paraformer:
            out.append(f"callbacks.seedtts_eval.paraformer={paraformer}")
    if data is not None:  # the test sets and the tiny text LM beside this corpus
        out.append(f"model.lm_init.path={data.parent}/lm/tiny")
        if eval_every > 0:  # the curves in English (the budget's target)
            out.append(f"callbacks.seedtts_eval.testset=[{data}/seedtts/en/meta.lst]")
    return out


def run_demo(limit: int | None = None, train_vae: bool = False, vae_steps: int | None = None,
             tts_steps: int | None = TTS_STEPS, eval_every: int = EVAL_EVERY, paraformer: str | None = None) -> dict:
    times: dict[str, float] = {}

    def stage(name, fn):
        print(f"\n[demo] ---- {name} ----", flush=True)
        start = time.time()
        out = fn()
        times[name] = round(time.time() - start, 1)
        print(f"[demo] {name}: {times[name]} s", flush=True)
        return out

    stage("data", lambda: build_corpus(DATA, num_utts=NUM_UTTS))
    common = [f"data.root={DATA}", f"run.root={RUNS}"]
    if train_vae:
        vae_args = common + ([f"trainer.max_steps={vae_steps}"] if vae_steps else [])
        def train_vae_here() -> Path:
            run = _train_or_reuse("audiovae", "tiny", vae_args)
            out = run / "export"  # with the latent statistics `make tiny-vae` stores
            return out if (out / "audiovae.pth").is_file() else export_with_stats(run, out, DATA / "train.jsonl")

        vae = stage("tiny VAE (training)", train_vae_here)
        vae_source = f"trained here: {vae}"
    else:
        if not (SHIPPED_VAE / "audiovae.pth").is_file():
            raise SystemExit(f"[demo] the shipped tiny VAE is missing ({SHIPPED_VAE}/audiovae.pth): "
                             "restore it from git, or train one with `make demo ARGS=--train-vae`")
        vae = SHIPPED_VAE
        vae_source = f"shipped with the repository: {vae} (see its README.md; --train-vae trains one)"
        print(f"[demo] tiny VAE: {vae_source}")
    overrides = common + tts_overrides(vae, tts_steps, eval_every, paraformer, DATA)

    def cache():
        return ensure_caches(compose("d256s9", "tiny", common + [f"vae.path={vae}", *DATA_RECIPE]))

    stage("latent cache", cache)
    tts = stage("tiny d256s9 backbone (training, evaluated every "
                f"{eval_every} steps)" if eval_every > 0 else "tiny d256s9 backbone (training)",
                lambda: _train_or_reuse("d256s9", "tiny", overrides))
    results = {name: stage(f"eval {name}", lambda name=name: _evaluate(tts, name, limit, paraformer))
               for name in EVAL_SETS}
    references = stage("ground truth and VAE resynthesis (en)", lambda: {
        "ground truth": _evaluate_reference(None, "en", limit, paraformer),
        "VAE resynthesis": _evaluate_reference(vae, "en", limit, paraformer)})

    def report():
        # the run (its curves and evaluations during training) and the final evaluations on the whole
        # test sets, which carry the DNSMOS column that the evaluations during training do not
        finals = sorted(p for p in (tts / "eval").glob("*/final_step_*") if (p / "metrics.json").is_file())
        return write_report([tts, *finals], Path(RUNS) / "demo" / "report", samples_per_testset=3)

    report_md = stage("report", report)
    keys = ("wer", "wer_unavailable", "sim", "sim_model", "mos", "mos_model", "mcd_db", "duration_ratio", "duration_ratio_median",
            "duration_within_25pct", "n_utts", "cosine_to_original")
    summary = {"stage_seconds": times, "total_seconds": round(sum(times.values()), 1), "vae": vae_source,
               "tts_run": str(tts), "report": str(report_md),
               "results": {name: {**{k: m.get(k) for k in keys}, "asr": _asr_name(m, name.split("_")[0])}
                           for name, m in results.items()},
               "references_en": {name: {**{k: m.get(k) for k in keys}, "asr": _asr_name(m, "en")}
                                 for name, m in references.items()}}
    out = Path(RUNS) / "demo"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n[demo] stage times (s): " + ", ".join(f"{k} {v}" for k, v in times.items())
          + f"; total {summary['total_seconds']} s")
    print(f"[demo] VAE: {vae_source}")
    for lang, r in summary["results"].items():
        metric = "WER" if lang.startswith("en") else "CER"
        wer = (f"{metric} {r['wer']:.1f}% ({r['asr']})" if r["wer"] is not None
               else f"{metric} unavailable ({r['wer_unavailable'].split(':')[0]}; see metrics.json)")
        dur = ("duration ratio -" if r["duration_ratio"] is None else
               f"duration gen/gt mean {r['duration_ratio']:.2f}, within 25% for {100 * r['duration_within_25pct']:.0f}%")
        mos = "MOS -" if r.get("mos") is None else f"MOS {r['mos']:.2f} ({r['mos_model']})"
        print(f"[demo] {lang} ({r['n_utts']} utts): {wer}; SIM {r['sim']} ({r['sim_model']}); {mos}; "
              f"MCD {r['mcd_db']} dB; {dur}")
    for name, r in summary["references_en"].items():
        wer = "WER -" if r["wer"] is None else f"WER {r['wer']:.1f}% ({r['asr']})"
        kept = "" if r.get("cosine_to_original") is None else f"; cosine to the original {r['cosine_to_original']} (resemblyzer)"
        print(f"[demo] en {name} ({r['n_utts']} utts): {wer}; SIM to the prompt {r['sim']} ({r['sim_model']}){kept}")
    print(f"[demo] report: {report_md} (and report.html beside it)")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=0, help="test utterances per language (0: all)")
    parser.add_argument("--train-vae", action="store_true",
                        help="train the tiny VAE here instead of starting from the shipped one")
    parser.add_argument("--vae-steps", type=int, help="with --train-vae: generator steps (default: the tiny recipe's)")
    parser.add_argument("--tts-steps", type=int, default=TTS_STEPS,
                        help=f"tiny d256s9 training steps (default {TTS_STEPS}: the 20-minute budget on 2 AVX2 cores)")
    parser.add_argument("--eval-every", type=int, default=EVAL_EVERY,
                        help="Seed-TTS-Eval (8 utts per language) every N backbone steps during training (0: off)")
    parser.add_argument("--paraformer", help="paraformer-zh folder for the Chinese CER (or $VOXLAB_PARAFORMER)")
    parser.add_argument("--data", default=str(DATA), help="corpus folder (built there when missing)")
    parser.add_argument("--runs", default=RUNS, help="run root")
    parser.add_argument("--num-utts", type=int, default=NUM_UTTS, help="corpus size when it is built (a smaller one: a quick dry run)")
    args = parser.parse_args(argv)
    configure(args.data, args.runs, args.num_utts)
    run_demo(args.limit or None, args.train_vae, args.vae_steps, args.tts_steps, args.eval_every, args.paraformer)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m eval --testset <meta.lst or folder> (--wavs DIR | --model MODEL) [options]`.

Scores existing wavs (`--wavs`), or generates them first with a model (`--model`, resumable), then
transcribes (or reads `--transcripts`), scores WER/CER and speaker SIM, and writes metrics.json,
per_utt.csv and summary.md into `--out` (default `evals/<testset>_<time>`). `--asr none` scores
without ASR, `--asr auto` without it when its weights are missing: WER is left missing (null, with
the reason) and SIM is still scored; `--asr required` (the default) fails on missing ASR weights.
`--seeds 0 1 2` (with --model) evaluates each seed into `<out>/seed_<k>/` and writes the mean with a 95%
bootstrap interval over utterances and seeds into `<out>` (eval/seeds.py).
`--mos dnsmos|utmos` adds a predicted MOS per utterance (named in every result, as the SIM model is).
Exit status: 0 done, 2 bad input or missing weights (message says what to do).
"""
from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime
from pathlib import Path

from eval.backends import ASR_POLICIES, EvalConfig
from eval.errors import EvalError
from eval.generate import DTYPES, check_generation_dir, generate_fn_for, load_for_generation, model_fingerprint
from eval.mos import MOS_CHOICES
from eval.normalize import VARIANTS
from eval.run import evaluate, preflight
from eval.seeds import evaluate_seeds
from eval.sim import SIM_CHOICES
from eval.testset import TestSetError, testset_name


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--testset", required=True, help="meta.lst, or a folder holding one")
    src = p.add_argument_group("audio to score")
    src.add_argument("--wavs", help="folder of <utt>.wav to score (default with --model: <out>/wavs)")
    src.add_argument("--model", help="generate with this model first (checkpoint, run or model folder)")
    src.add_argument("--cfg", type=float, default=2.0, help="generation: guidance scale")
    src.add_argument("--timesteps", type=int, default=10, help="generation: solver steps")
    src.add_argument("--temperature", type=float, default=1.0, help="generation: noise temperature")
    src.add_argument("--seed", type=int, default=0, help="generation: base seed (each utterance's own from it and its name)")
    src.add_argument("--seeds", type=int, nargs="+",
                     help="generation: several base seeds, each evaluated into <out>/seed_<k>/; <out> gets the mean with "
                          "a 95%% bootstrap interval over utterances and seeds (one seed: as --seed)")
    src.add_argument("--max-len", type=int, default=4096, help="generation: most patches per utterance")
    src.add_argument("--batch-size", type=int, default=0,
                     help="generation: utterances per batch (0: as many as --memory-gb allows, at most 32)")
    src.add_argument("--memory-gb", type=float, default=2.0, help="generation: memory budget of one batch")
    src.add_argument("--dtype", choices=DTYPES, default=None,
                     help="generation: backbone weights (models.load dtype; int8 on CPU only)")
    src.add_argument("--vae-dtype", choices=("float32", "bfloat16"), default=None,
                     help="generation: AudioVAE weights (default float32; bfloat16 encodes and decodes about 2x faster on CPU)")
    sel = p.add_argument_group("selection")
    sel.add_argument("--limit", type=int, help="first N utterances only")
    sel.add_argument("--utts", help="comma-separated utt names to score")
    sel.add_argument("--lang", choices=("auto", "en", "zh"), default="auto",
                     help="language of the targets (auto: per utterance, CJK characters -> zh)")
    asr = p.add_argument_group("ASR")
    asr.add_argument("--asr", choices=ASR_POLICIES, default="required",
                     help="whisper (en) / paraformer (zh). required: missing weights fail; auto: WER when the "
                          "weights are there, else null with the reason; none: no WER; SIM is scored either way")
    asr.add_argument("--transcripts", help="JSONL {\"utt\", \"text\"} lines replacing ASR")
    asr.add_argument("--whisper", default="auto", help="auto (a transformers whisper-large-v3 folder from $VOXLAB_WHISPER_HF or the HF cache: the protocol's path; else "
                          "openai-whisper large-v3 if cached; else the bundled tiny.en), bundled, a transformers whisper folder, "
                          "a whisper name, a .pt checkpoint or a CTranslate2 folder")
    asr.add_argument("--paraformer", help="paraformer-zh model folder (or $VOXLAB_PARAFORMER)")
    asr.add_argument("--asr-batch-size", type=int, default=8)
    asr.add_argument("--normalization", choices=sorted(VARIANTS), default="seedtts")
    sim = p.add_argument_group("speaker similarity")
    sim.add_argument("--sim", choices=SIM_CHOICES, default="resemblyzer")
    sim.add_argument("--wavlm", help="transformers WavLM folder for wavlm_ecapa (or $VOXLAB_WAVLM)")
    sim.add_argument("--ecapa", help="wavlm_large_finetune.pth for wavlm_ecapa (or $VOXLAB_ECAPA)")
    sim.add_argument("--wespeaker", help="wespeaker folder: config.yaml + avg_model.pt (or $VOXLAB_WESPEAKER)")
    mos = p.add_argument_group("MOS prediction")
    mos.add_argument("--mos", choices=MOS_CHOICES, default="none",
                     help="dnsmos: DNSMOS P.835 OVRL from the speechmos wheel (speech quality, not naturalness); "
                          "utmos: UTMOS22 strong from --utmos")
    mos.add_argument("--utmos", help="UTMOS22 strong checkpoint (utmos22_strong_step7459_v1.pt) for --mos utmos "
                                     "(or $VOXLAB_UTMOS)")
    out = p.add_argument_group("output")
    out.add_argument("--out", help="result folder (default evals/<testset>_<YYYYmmdd-HHMMSS>)")
    out.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    out.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    out.add_argument("--check", action="store_true", help="only check the test set and backend weights")
    args = p.parse_args(argv)
    if not args.wavs and not args.model and not args.check:
        p.error("give --wavs DIR (score existing wavs) or --model MODEL (generate them first)")
    if args.seeds and len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds must list distinct seeds, got {args.seeds}")
    if args.seeds and len(args.seeds) == 1:  # one seed: today's single evaluation, files and all
        args.seed, args.seeds = args.seeds[0], None
    if args.seeds and not args.model:
        p.error("--seeds with several seeds needs --model (a folder of existing wavs is one seed)")
    return args


# what `evaluate` writes into --out; a folder holding anything else is not ours to write into
RESULT_NAMES = {"metrics.json", "per_utt.csv", "summary.md", "wavs", "metrics.json.tmp", "summary.md.tmp"}
SEED_DIR = re.compile(r"^seed_-?\d+$")  # a multi-seed evaluation's per-seed folders (eval/seeds.py)


def check_out_dir(out_dir: Path, wavs: str | None) -> None:
    """--out must be new, empty or a previous result folder: even --overwrite only replaces results."""
    if out_dir.exists() and not out_dir.is_dir():
        raise EvalError(f"--out {out_dir} is a file, not a folder: choose a new folder")
    if not out_dir.is_dir():
        return
    ours = set(RESULT_NAMES)
    if wavs and Path(wavs).resolve().parent == out_dir.resolve():
        ours.add(Path(wavs).name)  # --wavs may live inside --out
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in ours and not SEED_DIR.match(p.name))
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise EvalError(f"--out {out_dir} is not an evaluation result folder (it holds {shown}): choose a new or "
                        "empty folder; such a folder is never written into, even with --overwrite")


def main(argv=None) -> int:
    args = parse_args(argv)
    config = EvalConfig(asr=args.asr, whisper=args.whisper, paraformer=args.paraformer, sim=args.sim, wavlm=args.wavlm,
                        ecapa=args.ecapa, wespeaker=args.wespeaker, mos=args.mos,
                        utmos=args.utmos, asr_batch_size=args.asr_batch_size,
                        lang=args.lang, normalization=args.normalization)
    if args.device:
        config.device = args.device
    utts = [u.strip() for u in args.utts.split(",") if u.strip()] if args.utts else None
    try:
        if args.check or args.model:
            # test set and weights first: a missing ASR/SIM weight fails before the TTS model loads
            meta, items, langs, _, _ = preflight(args.testset, config, transcripts=args.transcripts,
                                              limit=args.limit, utts=utts)
            if args.check:
                print(f"ok: {len(items)} utts ({', '.join(sorted(set(langs.values())))}); "
                      "test set valid, backend weights present")
                return 0
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out_dir = Path(args.out) if args.out else Path("evals") / f"{testset_name(args.testset)}_{stamp}"
        check_out_dir(out_dir, args.wavs)  # before a model loads or a wav is generated
        generation = generate_fn = None
        if args.model:
            wavs_dirs = ([Path(args.wavs) if args.wavs else out_dir / "wavs"] if not args.seeds else
                         [Path(args.wavs) / f"seed_{s}" if args.wavs else out_dir / f"seed_{s}" / "wavs" for s in args.seeds])
            for wavs_dir in wavs_dirs:
                check_generation_dir(wavs_dir, meta)  # before the model loads

            settings = {"cfg": args.cfg, "timesteps": args.timesteps, "temperature": args.temperature,
                        "seed": args.seed, "max_len": args.max_len}
            generation = {"model": model_fingerprint(args.model), **settings, "seeding": "per-utterance"}
            if args.dtype not in (None, "float32"):  # other weights, other wavs
                generation["dtype"] = args.dtype
            if args.vae_dtype not in (None, "float32"):
                generation["vae_dtype"] = args.vae_dtype
            model = load_for_generation(args.model, config.device, args.dtype, args.vae_dtype)
            generate_fn = generate_fn_for(model, settings, args.batch_size, args.memory_gb)
        common = dict(config=config, transcripts=args.transcripts, limit=args.limit, utts=utts)
        if args.seeds:
            def one_seed(seed, folder, gen, overwrite):
                fn = generate_fn_for(model, {**settings, "seed": seed}, args.batch_size, args.memory_gb)
                return evaluate(args.testset, Path(args.wavs) / folder.name if args.wavs else None, folder,
                                generation=gen, generate_fn=fn, overwrite=overwrite, **common)

            evaluate_seeds(out_dir, args.seeds, generation, one_seed, config=config.to_dict(), overwrite=args.overwrite,
                           log=lambda msg: print(f"[eval] {msg}", file=sys.stderr, flush=True))
        else:
            evaluate(args.testset, args.wavs, out_dir, generation=generation, generate_fn=generate_fn,
                     overwrite=args.overwrite, **common)
        print(out_dir / "summary.md")
        return 0
    except (EvalError, TestSetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

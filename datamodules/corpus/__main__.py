"""`python -m datamodules.corpus --out data/corpus [--seed 0] [--num-utts 720] [--workers 2]`"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from .build import STAMP, CorpusError, build_corpus


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m datamodules.corpus",
        description="Build the embedded EN+ZH espeak-ng corpus (train/val manifests, a "
        "Seed-TTS-Eval style test set on held-out voices, lm_text.txt). Deterministic for a "
        "seed. Re-running with the same settings does nothing; other settings first delete "
        f"the previous build's own files (listed in {STAMP}) and leave every other file alone.")
    p.add_argument("--out", default="data/corpus", help="output folder (default: data/corpus)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-utts", type=int, default=720,
                   help="rendered utterances in all: train + val + test prompts and targets")
    p.add_argument("--workers", type=int, default=2, help="synthesis processes")
    p.add_argument("--lm-size", type=int, default=20000, help="sentences in lm_text.txt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    try:
        out = build_corpus(args.out, seed=args.seed, num_utts=args.num_utts,
                           workers=args.workers, lm_size=args.lm_size, progress=not args.quiet)
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = json.loads((out / "corpus.json").read_text(encoding="utf-8"))
    c = summary["counts"]
    print(f"corpus {out}: {summary['utterances']} utterances ({c['train']['items']} train, "
          f"{c['val']['items']} val, {c['test']['items']} test items), "
          f"{summary['hours']:.3f} h, {summary['lm_sentences']} LM sentences, "
          f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

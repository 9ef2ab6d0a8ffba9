"""`make prepare DATASET=<name> SRC=<corpus folder> [OUT=data/<name>]`: a public corpus -> manifests.

The recipes are in `datamodules/recipes/`; each reads the corpus as released (lhotse's parser).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datamodules.recipes import RECIPES, RecipeError, prepare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Turn a public corpus in its released layout into "
                                                 "VoxLab train/val manifests.")
    parser.add_argument("--dataset", required=True, choices=sorted(RECIPES))
    parser.add_argument("--src", required=True, help="the corpus folder as released (extracted)")
    parser.add_argument("--out", default=None, help="manifest folder (default data/<dataset>)")
    parser.add_argument("--val-fraction", type=float, default=0.01,
                        help="held-out share for corpora without an official split (at least one utterance)")
    parser.add_argument("--mic", default="mic2", help="vctk 0.92: mic1 or mic2")
    parser.add_argument("--lang", default=None, help="emilia: one language (de en fr ja ko zh), default all present")
    parser.add_argument("--subset", default="Basic", help="wenetspeech4tts: Premium, Standard or Basic")
    parser.add_argument("--workers", type=int, default=1, help="emilia: threads reading the JSONL files; every recipe: processes normalising the text")
    parser.add_argument("--normalize-text", action=argparse.BooleanOptionalAction, default=None,
                        help="spell out numbers, dates and symbols (English, Chinese); default on for "
                             "corpora with raw text (vctk aishell3 emilia wenetspeech4tts)")
    args = parser.parse_args(argv)
    if not 0 <= args.val_fraction < 1:
        parser.error("--val-fraction must be in [0, 1)")
    out = Path(args.out or f"data/{args.dataset}")
    try:
        written = prepare(args.dataset, args.src, out, args.val_fraction, normalize=args.normalize_text, mic=args.mic, lang=args.lang,
                          subset=args.subset, workers=args.workers)
    except RecipeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for split, (path, n, hours) in written.items():
        print(f"[prepare] {split}: {path} ({n} utterances, {hours:.2f} h)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

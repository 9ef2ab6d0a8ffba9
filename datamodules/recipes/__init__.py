"""Dataset recipes: a public corpus in its released layout -> VoxLab manifests (`make prepare`).

`prepare(dataset, src, out)` reads the corpus with its reader in `corpora.py` (lhotse's recipe)
and writes `out/train.jsonl` and `out/val.jsonl` (and `out/test.jsonl` where the corpus has an
official test split) in the manifest format of `datamodules/manifest.py`: audio paths relative to
`out`, every utterance once, ids unique. Corpora without an official split get a held-out val
set: the `val_fraction` of utterances (at least one) whose id hashes lowest, so the split never
depends on file order. Existing manifests are never overwritten.

Recipes whose corpus gives raw text (RAW_TEXT) have it normalised for TTS by default (numbers,
dates, symbols spelled out: voxlab/text_frontend.py, English and Chinese); a corpus's own
normalised text (LJSpeech, LibriTTS-R) is kept as it is.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

from datamodules.recipes.corpora import RECIPES, Utterance
from voxlab.safe_io import atomic_path
from voxlab.text_frontend import normalize_texts

SPLITS = ("train", "val", "test")
RAW_TEXT = ("vctk", "aishell3", "emilia", "wenetspeech4tts")


class RecipeError(ValueError):
    pass


def prepare(dataset: str, src: str | Path, out: str | Path, val_fraction: float = 0.01,
            normalize: bool | None = None, **options) -> dict[str, tuple[Path, int, float]]:
    """Write the manifests of `dataset` found at `src` into `out`; returns split -> (manifest,
    utterances, hours). `normalize`: the text frontend on each text (None: on for RAW_TEXT)."""
    if dataset not in RECIPES:
        raise RecipeError(f"unknown DATASET={dataset!r}; one of: {', '.join(sorted(RECIPES))}")
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise RecipeError(f"SRC={src} is not a folder (the {dataset} corpus as released, extracted)")
    taken = [out / f"{s}.jsonl" for s in SPLITS if (out / f"{s}.jsonl").exists()]
    if taken:
        raise RecipeError(f"{taken[0]} already exists: choose another OUT or remove it first")
    try:
        rows = RECIPES[dataset](src, **options)
    except (AssertionError, FileNotFoundError, KeyError) as err:  # lhotse asserts the layout's files
        raise RecipeError(f"{src} does not look like {dataset} as released: {err}") from None
    if not rows:
        raise RecipeError(f"{src}: the {dataset} recipe found no utterance")
    dupes = [u for u, n in Counter(r.utt for r in rows).items() if n > 1]
    if dupes:
        raise RecipeError(f"{src}: {len(dupes)} utterance ids occur twice (first: {dupes[0]})")
    if normalize is None:
        normalize = dataset in RAW_TEXT
    if normalize:
        spoken = normalize_texts([(r.text, r.lang) for r in rows], int(options.get("workers", 1)))
        for r, text in zip(rows, spoken):
            r.text = text
    _hold_out(rows, val_fraction)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in SPLITS:
        chosen = [r for r in rows if r.split == split]
        if chosen:
            hours = sum(r.duration for r in chosen) / 3600
            written[split] = (_write(out / f"{split}.jsonl", chosen), len(chosen), hours)
    return written


def _hold_out(rows: list[Utterance], fraction: float) -> None:
    """Rows without an official split: the lowest-hashing ids go to val, the rest to train."""
    free = [r for r in rows if r.split is None]
    if not free:
        return
    free.sort(key=lambda r: hashlib.sha1(r.utt.encode()).hexdigest())
    n_val = max(1, round(fraction * len(free))) if len(free) > 1 else 0
    for i, r in enumerate(free):
        r.split = "val" if i < n_val else "train"


def _write(path: Path, rows: list[Utterance]) -> Path:
    folder = path.parent.resolve()
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            item = {"utt": r.utt, "audio": Path(os.path.relpath(r.audio.resolve(), folder)).as_posix(),
                    "text": r.text, "duration": round(r.duration, 4), "speaker": r.speaker, "lang": r.lang}
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    return path

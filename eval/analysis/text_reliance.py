"""Does the backbone read the text? Teacher-forced flow loss with each utterance's own text beside
the same latents with another utterance's text, and with no LM condition at all.

A model that speaks must predict a patch better from the right text than from a wrong one. A
model that continues the audio history without reading the text (the failure of a tiny backbone
early in training: it babbles in the right voice) shows no gap, whatever its loss. The flow loss
is taken at fixed flow times `t` (t = 1 is pure noise, where the condition matters most) with
the same noise for every variant, so the gaps are differences of the model alone.

    python -m eval.analysis.text_reliance --model RUN_OR_CKPT [--manifest data/corpus/val.jsonl]
        [--lang en] [--limit 12] [--times 0.5 0.95] [--seeds 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from models import load
from models.packing import collate_packed, pack_utterance
from voxlab.audio import load_audio


def _losses(backbone, items, t: float, seeds: int, keep: bool = True) -> float:
    batch = collate_packed(items)
    n = int(batch["loss_mask"].sum())
    p, d = batch["audio_feats"].shape[-2:]
    total = 0.0
    for seed in range(seeds):
        noise = torch.randn(n, p, d, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            out = backbone(batch, t=torch.full((n,), t), noise=noise, cfg_keep=torch.full((n,), keep))
        total += float(out["flow_loss"])
    return total / seeds


def text_reliance(backbone, utterances: list[tuple[list[int], torch.Tensor]], times=(0.5, 0.95),
                  seeds: int = 3) -> list[dict]:
    """utterances: (text ids, latents [T, D]) pairs, at least two. Per flow time: the loss with the
    right text, with the next utterance's text (a cyclic shift), with no condition (mu = 0), and
    `text_gap` = wrong - right (> 0: the text is read)."""
    if len(utterances) < 2:
        raise ValueError("text_reliance needs at least two utterances (each one's text is swapped for another's)")
    backbone = backbone.eval()
    n = len(utterances)
    right = [pack_utterance(ids, lat) for ids, lat in utterances]
    wrong = [pack_utterance(utterances[(i + 1) % n][0], lat) for i, (_, lat) in enumerate(utterances)]
    rows = []
    for t in times:
        r, w = _losses(backbone, right, t, seeds), _losses(backbone, wrong, t, seeds)
        rows.append({"t": float(t), "right_text": round(r, 5), "wrong_text": round(w, 5),
                     "no_condition": round(_losses(backbone, right, t, seeds, keep=False), 5),
                     "text_gap": round(w - r, 5)})
    return rows


def load_utterances(model, manifest: Path, lang: str, limit: int) -> list[tuple[list[int], torch.Tensor]]:
    """The first `limit` utterances of `lang` in a manifest (JSON lines with text, audio, lang), encoded
    by the model's own VAE and tokenizer."""
    out = []
    for number, line in enumerate(manifest.read_text().splitlines(), 1):
        if len(out) >= limit or not line.strip():
            continue
        try:
            entry = json.loads(line)
            text, audio = entry["text"], entry["audio"]
        except (ValueError, KeyError) as err:
            raise SystemExit(f"{manifest}:{number}: not a manifest line with text and audio ({err})")
        if entry.get("lang", lang) != lang:
            continue
        wav = Path(audio) if Path(audio).is_absolute() else manifest.parent / audio
        samples = torch.as_tensor(load_audio(wav, model.vae.sample_rate)).view(1, 1, -1)
        with torch.no_grad():
            latents = model.vae.encode(samples)[0].t()
        out.append((model.tokenizer.encode(text), latents))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint, run folder or exported model")
    p.add_argument("--manifest", default="data/corpus/val.jsonl", help="utterances to score (default %(default)s)")
    p.add_argument("--lang", default="en")
    p.add_argument("--limit", type=int, default=12, help="utterances (default %(default)s)")
    p.add_argument("--times", type=float, nargs="+", default=[0.5, 0.95], help="flow times (1 = noise)")
    p.add_argument("--seeds", type=int, default=3, help="noise draws averaged per time")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    manifest = Path(args.manifest)
    if not manifest.is_file():
        raise SystemExit(f"--manifest {manifest}: no such file")

    model = load(args.model)
    utts = load_utterances(model, manifest, args.lang, args.limit)
    rows = text_reliance(model.backbone, utts, args.times, args.seeds)
    print(f"text reliance of {args.model} on {len(utts)} {args.lang} utterances of {manifest}")
    for row in rows:
        print(f"  t={row['t']}: right text {row['right_text']:.4f}  wrong text {row['wrong_text']:.4f}  "
              f"no condition {row['no_condition']:.4f}  text gap {row['text_gap']:+.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make tiny-vae`: train the tiny AudioVAE recipe and export it as the VAE the demo ships.

The recipe is the tiny preset, experiments/audiovae/scale/tiny.yaml: the frame-rate VAE with an
iSTFT head (models/istft_vae.py), mel + KL, about 14 minutes on 2 CPU cores. This command runs
`make train EXP=audiovae SCALE=tiny`, then stores the per-channel statistics of its latents over
the corpus's training utterances (so `encode` gives the backbone unit-scale latents), then exports
the finished run (`audiovae.pth` + `audiovae_config.json`, our format: the official AudioVAE class
cannot load this decoder). `make demo` starts from the export the repository ships
(assets/tiny_audiovae/; its README.md says what it reaches). An existing export is never
replaced: pass `--out` to write elsewhere, or remove the folder first.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models import export_audiovae, load_audiovae
from voxlab.audio import load_audio

SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "tiny_audiovae"


def corpus_wavs(manifest: Path, sample_rate: int, limit: int = 400):
    """Up to `limit` training waveforms [1, 1, T] of a manifest (JSONL with `audio` per line)."""
    import torch

    lines = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()][:limit]
    for entry in lines:
        yield torch.as_tensor(load_audio(manifest.parent / entry["audio"], sample_rate)).view(1, 1, -1)


def export_with_stats(run: Path, out: Path, manifest: Path) -> Path:
    """The finished VAE run `run`, with the latent statistics of `manifest`'s utterances stored
    (the iSTFT VAE), exported to `out`; returns `out`."""
    vae = load_audiovae(str(run))
    if hasattr(vae, "set_latent_stats"):
        if not manifest.is_file():
            raise FileNotFoundError(f"--stats-manifest {manifest} not found (make data builds it)")
        stats = vae.set_latent_stats(corpus_wavs(manifest, vae.sample_rate))
        print(f"[tiny-vae] latent statistics over {stats['frames']} frames of {manifest}: raw std "
              f"{stats['raw_std']:.2f}, |channel mean| {stats['raw_abs_mean']:.2f}; standardised frame-to-frame "
              f"difference std {stats['standardised_step_std']:.2f}")
    export_audiovae(vae, out)
    print(f"[tiny-vae] exported {run} -> {out}; measure it with: "
          f".venv/bin/python benchmarks/audiovae_quality.py {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(SHIPPED), help="export folder (must not hold an audiovae.pth yet)")
    p.add_argument("--from-run", help="export this finished run instead of training one")
    p.add_argument("--stats-manifest", default="data/corpus/train.jsonl",
                   help="utterances whose latent statistics the export stores (the demo's corpus)")
    p.add_argument("overrides", nargs="*", help="dotted config overrides for the training run")
    args = p.parse_args(argv)
    out = Path(args.out)
    if (out / "audiovae.pth").exists():
        print(f"error: {out}/audiovae.pth exists; it is never replaced: remove it or pass --out", file=sys.stderr)
        return 2
    if not Path(args.stats_manifest).is_file():  # checked before 15 minutes of training, not after
        print(f"error: --stats-manifest {args.stats_manifest} not found (make data builds it)", file=sys.stderr)
        return 2
    if args.from_run:
        run = Path(args.from_run)
    else:
        from voxlab.cli.train import train  # the train command's Lightning stack: only when it trains

        run = train("audiovae", "tiny", args.overrides)
    try:
        export_with_stats(run, out, Path(args.stats_manifest))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

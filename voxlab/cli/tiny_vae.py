"""`make tiny-vae`: train the tiny AudioVAE recipe and export it as the VAE the demo ships.

The demo's budget (20 minutes on 2 CPU cores, backbone included) is too short for a VAE whose
reconstructions stay intelligible, so `make demo` starts from `assets/tiny_audiovae/` (see its
README.md for how it was trained and what it reaches) and trains only the backbone. This command
is the one that reproduces it: `make train EXP=audiovae SCALE=tiny` (the recipe is the tiny
preset, experiments/audiovae/scale/tiny.yaml), then the export of the finished run (official
`audiovae.pth` + `audiovae_config.json`). An existing export is never replaced: pass `--out` to
write elsewhere, or remove the folder first.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "tiny_audiovae"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(SHIPPED), help="export folder (must not hold an audiovae.pth yet)")
    p.add_argument("--from-run", help="export this finished run instead of training one")
    p.add_argument("overrides", nargs="*", help="dotted config overrides for the training run")
    args = p.parse_args(argv)
    out = Path(args.out)
    if (out / "audiovae.pth").exists():
        print(f"error: {out}/audiovae.pth exists; it is never replaced: remove it or pass --out", file=sys.stderr)
        return 2
    from models import export_audiovae, load_audiovae

    if args.from_run:
        run = Path(args.from_run)
    else:
        from voxlab.cli.train import train

        run = train("audiovae", "tiny", args.overrides)
    export_audiovae(load_audiovae(str(run)), out)
    print(f"[tiny-vae] exported {run} -> {out}; measure it with: "
          f".venv/bin/python benchmarks/audiovae_quality.py {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

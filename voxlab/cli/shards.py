"""`make shards MANIFEST=<manifest> [OUT=<folder>] [ARGS=...]`: a manifest -> tar shards for streaming.

Audio shards by default (the files' own bytes); `--vae PATH` writes latent shards instead (the
latent cache at scale: target and prompt forms, `--dtype float16|bfloat16` to halve them).
`--workers N` writes N shards at once; `--rank R --world W` splits the shards across machines
(every machine runs the same command; `shards.json` appears when the last shard is written).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datamodules.manifest import ManifestError
from datamodules.shards.format import ShardError, read_index
from datamodules.shards.write import DTYPE_NAMES, write_shards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a manifest's utterances as tar shards.")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--out", default=None, help="default: <manifest folder>/shards/<manifest name>[-latents-<dtype>]")
    parser.add_argument("--target-mb", type=float, default=256.0, help="size each shard reaches before the next starts")
    parser.add_argument("--vae", default=None, help="write latents encoded by this VAE (checkpoint, run folder, export)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPE_NAMES), help="latent storage type")
    parser.add_argument("--no-prompts", action="store_true", help="latents: leave out the prompt form")
    parser.add_argument("--patch-size", type=int, default=2, help="latents: pad to whole patches of this many frames")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--workers", type=int, default=1, help="processes writing shards at once")
    parser.add_argument("--rank", type=int, default=0, help="this machine's share: shards i with i %% world == rank")
    parser.add_argument("--world", type=int, default=1)
    args = parser.parse_args(argv)
    if args.target_mb <= 0:
        parser.error("--target-mb must be positive")
    manifest = Path(args.manifest)
    suffix = f"-latents-{DTYPE_NAMES[args.dtype]}" if args.vae else ""
    out = Path(args.out) if args.out else manifest.resolve().parent / "shards" / f"{manifest.stem}{suffix}"
    try:
        write_shards(manifest, out, args.target_mb, args.vae, args.dtype, not args.no_prompts, args.patch_size,
                     args.sample_rate, args.workers, args.rank, args.world)
    except (ShardError, ManifestError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        index = read_index(out)
    except ShardError:
        print(f"[shards] this rank's shards are in {out}; shards.json follows when every rank is done")
        return 0
    print(f"[shards] {out}: {len(index['shards'])} shards, {index['entries']} utterances, "
          f"{index['seconds'] / 3600:.2f} h, {index['bytes'] / 2 ** 20:.1f} MiB ({index['kind']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Backbone training-step speed on CPU: ours with the latent cache, ours encoding on the fly, and
the official `voxcpm` package (2.0.3) on the same config and batch. Not a test.

One step = forward (flow-matching + stop losses) + backward + AdamW step, batch 1: `--text-tokens`
random text tokens and `--patches` latent patches (50 patches = 100 frames = 4 s at 25 Hz):
- cache: the latents are a precomputed tensor (what training reads from the latent cache);
- onthefly: each step first encodes the 4 s waveform with the VAE (no grad; tiny VAE for `tiny`,
  the paper-size VAE for `paper`), then packs the batch, then the same step;
- official: `VoxCPMModel.forward(...)` -> loss/diff + loss/stop, backward, and the same torch AdamW
  over its backbone parameters (the package has no optimizer step of its own; `--no-optim` times
  forward + backward only, in all three).
Both models are built with random weights (speed does not depend on the values) and held at
once; after one warm-up step each, the three steps run interleaved `--repeats` times, so load from
other processes hits them alike. Medians are reported, with patches per second and the ratios
ours / official (goal <= 1.0). Memory at paper size: 2 x 0.65 B fp32 parameters (5.2 GB) + one
model's gradients (2.6 GB), plus 2 x 5.2 GB of AdamW state unless `--no-optim` (use it below
~20 GB free).

    .venv/bin/python benchmarks/bench_training.py [--sizes tiny paper] [--repeats 3] [--threads 1]
        [--patches 50] [--text-tokens 40] [--no-optim] [--json out.json]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from models.audiovae import PAPER_CONFIG, AudioVAE  # noqa: E402
from models.official import to_official_config  # noqa: E402
from models.packing import collate_packed, pack_utterance  # noqa: E402
from models.voxcpm import count_parameters  # noqa: E402
from models.official_reference import build_official  # noqa: E402
from voxlab.config import compose, instantiate  # noqa: E402

TINY_VAE = {**PAPER_CONFIG, "encoder_dim": 8, "decoder_dim": 128}  # experiments/audiovae/scale/tiny.yaml


def make_batch(vocab: int, text_tokens: int, latents: torch.Tensor, patch_size: int) -> dict:
    g = torch.Generator().manual_seed(0)
    text = torch.randint(128, vocab, (text_tokens,), generator=g)  # clear of the 101/102 markers
    return collate_packed([pack_utterance(text, latents, patch_size=patch_size)])


def adamw(params):
    return torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.01)


def bench_size(size: str, args) -> dict:
    model_cfg = compose("d256s9", size, ["model.lm_init.mode=none"]).model
    vae_cfg = TINY_VAE if size == "tiny" else PAPER_CONFIG
    torch.manual_seed(0)
    vae = AudioVAE(**vae_cfg).eval()
    seconds = args.patches * model_cfg.patch_size * vae.hop_length / vae.sample_rate
    wav = 0.1 * torch.randn(1, 1, int(seconds * vae.sample_rate), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        latents = vae.encode(wav)[0].t().contiguous()  # [frames, D]: what the cache holds
    batch = make_batch(model_cfg.lm.vocab_size, args.text_tokens, latents, model_cfg.patch_size)
    n_patches = int(batch["loss_mask"].sum())
    result = {"size": size, "patches": n_patches, "text_tokens": args.text_tokens, "audio_s": seconds,
              "optimizer_step": not args.no_optim, "threads": torch.get_num_threads()}

    ours = instantiate(model_cfg).train()
    result["params"] = count_parameters(ours)
    opt = adamw(ours.parameters())

    def ours_step(b):
        out = ours(b)
        (out["flow_loss"] + out["stop_loss"]).backward()
        if not args.no_optim:
            opt.step()
        opt.zero_grad(set_to_none=True)

    def onthefly():
        with torch.no_grad():
            z = vae.encode(wav)[0].t()
        ours_step(make_batch(model_cfg.lm.vocab_size, args.text_tokens, z, model_cfg.patch_size))

    official_cfg = to_official_config(dict(ours.config), dtype="float32")
    off = build_official(official_cfg, vae_config=vae_cfg).train()
    backbone = [p for n, p in off.named_parameters() if not n.startswith("audio_vae.")]
    for p in off.audio_vae.parameters():
        p.requires_grad_(False)
    off_opt = adamw(backbone)
    inputs = dict(text_tokens=batch["text_tokens"], text_mask=batch["text_mask"].int(),
                  audio_feats=batch["audio_feats"], audio_mask=batch["audio_mask"].int(),
                  loss_mask=batch["loss_mask"].int(), position_ids=torch.zeros_like(batch["text_tokens"]),
                  labels=batch["stop_labels"])

    def official_step():
        out = off(**inputs)
        (out["loss/diff"] + out["loss/stop"]).backward()
        if not args.no_optim:
            off_opt.step()
        off_opt.zero_grad(set_to_none=True)

    # interleaved (cache, on the fly, official, cache, ...): load from other processes hits all alike
    steps = {"cache": lambda: ours_step(batch), "onthefly": onthefly, "official": official_step}
    for step in steps.values():
        step()  # warm-up: allocator, AdamW state
    for key in steps:
        result[f"{key}_s"] = []
    for _ in range(args.repeats):
        for key, step in steps.items():
            t0 = time.perf_counter()
            step()
            result[f"{key}_s"].append(time.perf_counter() - t0)
    del ours, opt, off, off_opt
    gc.collect()
    for key in ("cache", "onthefly", "official"):
        med = statistics.median(result[f"{key}_s"])
        result[f"{key}_median_s"] = med
        result[f"{key}_patches_per_s"] = n_patches / med
    result["ratio_cache_vs_official"] = result["cache_median_s"] / result["official_median_s"]
    result["ratio_onthefly_vs_official"] = result["onthefly_median_s"] / result["official_median_s"]
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "paper"], choices=["tiny", "paper"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--patches", type=int, default=50)
    ap.add_argument("--text-tokens", type=int, default=40)
    ap.add_argument("--no-optim", action="store_true", help="forward + backward only (all three)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    for size in args.sizes:
        r = bench_size(size, args)
        results.append(r)
        what = "fwd+bwd+AdamW" if r["optimizer_step"] else "fwd+bwd"
        print(f"[{size}] {r['params'] / 1e6:.1f} M params, batch 1: {r['text_tokens']} text tokens + "
              f"{r['patches']} patches ({r['audio_s']:.1f} s), {what}, {r['threads']} thread(s), "
              f"median of {args.repeats}")
        for key, label in (("cache", "ours, latent cache"), ("onthefly", "ours, VAE on the fly"),
                           ("official", "official voxcpm")):
            print(f"  {label:22s} {r[f'{key}_median_s'] * 1000:9.1f} ms/step  "
                  f"{r[f'{key}_patches_per_s']:8.1f} patches/s")
        print(f"  ratio ours/official: cache {r['ratio_cache_vs_official']:.3f}, "
              f"on the fly {r['ratio_onthefly_vs_official']:.3f} (goal <= 1.0)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

Batched (after the batch-1 figures; `--batches 0` skips it): real training batches, built as
training builds them. The embedded corpus (data/corpus/train.jsonl) goes through the TTS dataset
(datamodules.tts: the configured char tokenizer, the same-speaker prompts drawn with
data.prompt_prob from the run seed, packed `[text, 101, patches, 102]`), its latents standing in
at their exact cached lengths (whole patches: ceil(samples / 1280) patches at 16 kHz) with
random values; the sampler is the training one (FrameBudgetBatchSampler, data.frame_budget,
data.max_batch_size, data.shuffle_seed) and `collate_tts` pads them. The first `--batches`
batches of epoch 0 are timed, ours (the cached latents) and the official `VoxCPMModel.forward`
on the same padded tensors (its signature takes exactly them: text_tokens, text_mask,
audio_feats, audio_mask, loss_mask, position_ids, labels; the official trainer itself batches a
fixed batch_size of random items, right-padded), interleaved; positions per second are
reported over all positions of the batch (B x longest) and over the real ones.
`--frame-budget 1024` (or `paper=1024`) overrides the configured budget (paper size at 4096
positions takes minutes a step on a CPU and ~15 GB). `--sampler bucket_size=256 jitter=0.1`
times a second sampler setting on the same corpus (ours only: its real positions per second).

Packing efficiency (no timing, every size): the share of padded positions per batch and per
epoch (5 epochs) of the sampler as configured and of other bucket sizes / jitters, the share of
the frame budget used, the batch sizes, how often two items that share a batch share one again
the next epoch (shuffling), and the official fixed-size random batches for comparison.

    .venv/bin/python benchmarks/bench_training.py [--sizes tiny paper] [--repeats 3] [--threads 1]
        [--patches 50] [--text-tokens 40] [--no-optim] [--json out.json]
        [--batches 2] [--frame-budget [SIZE=]N ...] [--sampler key=value ...] [--corpus-copies 1]
        [--skip batch1 batched]
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
from datamodules.tts import collate_tts  # noqa: E402
from models.packing import collate_packed, pack_utterance  # noqa: E402
from models.voxcpm import count_parameters  # noqa: E402
from models.official_reference import build_official  # noqa: E402
from datamodules.sampler import FrameBudgetBatchSampler, batchmate_repeat, padding_share  # noqa: E402
from voxlab.config import compose, instantiate  # noqa: E402

TINY_VAE = {**PAPER_CONFIG, "encoder_dim": 8, "decoder_dim": 128}  # experiments/audiovae/scale/tiny.yaml


def make_batch(vocab: int, text_tokens: int, latents: torch.Tensor, patch_size: int) -> dict:
    g = torch.Generator().manual_seed(0)
    text = torch.randint(128, vocab, (text_tokens,), generator=g)  # clear of the 101/102 markers
    return collate_packed([pack_utterance(text, latents, patch_size=patch_size)])


def adamw(params):
    return torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.01)


def official_inputs(b: dict) -> dict:
    """A packed batch as `VoxCPMModel.forward`'s arguments (the same padded tensors)."""
    return dict(text_tokens=b["text_tokens"], text_mask=b["text_mask"].int(), audio_feats=b["audio_feats"],
                audio_mask=b["audio_mask"].int(), loss_mask=b["loss_mask"].int(),
                position_ids=torch.zeros_like(b["text_tokens"]), labels=b["stop_labels"])


def training_steps(ours, off, optim: bool):
    """(ours_step(batch), official_step(inputs)): losses, backward, the AdamW step over the
    backbone (the official package has none of its own; its VAE stays frozen) unless not `optim`."""
    opt = adamw(ours.parameters())
    for p in off.audio_vae.parameters():
        p.requires_grad_(False)
    off_opt = adamw([p for n, p in off.named_parameters() if not n.startswith("audio_vae.")])

    def run(losses, optimizer):
        sum(losses).backward()
        if optim:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def ours_step(b):
        out = ours(b)
        run((out["flow_loss"], out["stop_loss"]), opt)

    def official_step(inputs):
        out = off(**inputs)
        run((out["loss/diff"], out["loss/stop"]), off_opt)

    return ours_step, official_step


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
    off = build_official(to_official_config(dict(ours.config), dtype="float32"), vae_config=vae_cfg).train()
    ours_step, official_step = training_steps(ours, off, not args.no_optim)
    inputs = official_inputs(batch)

    def onthefly():
        with torch.no_grad():
            z = vae.encode(wav)[0].t()
        ours_step(make_batch(model_cfg.lm.vocab_size, args.text_tokens, z, model_cfg.patch_size))

    # interleaved (cache, on the fly, official, cache, ...): load from other processes hits all alike
    steps = {"cache": lambda: ours_step(batch), "onthefly": onthefly, "official": lambda: official_step(inputs)}
    for step in steps.values():
        step()  # warm-up: allocator, AdamW state
    for key in steps:
        result[f"{key}_s"] = []
    for _ in range(args.repeats):
        for key, step in steps.items():
            t0 = time.perf_counter()
            step()
            result[f"{key}_s"].append(time.perf_counter() - t0)
    del ours, off, ours_step, official_step, onthefly, steps
    gc.collect()
    for key in ("cache", "onthefly", "official"):
        med = statistics.median(result[f"{key}_s"])
        result[f"{key}_median_s"] = med
        result[f"{key}_patches_per_s"] = n_patches / med
    result["ratio_cache_vs_official"] = result["cache_median_s"] / result["official_median_s"]
    result["ratio_onthefly_vs_official"] = result["onthefly_median_s"] / result["official_median_s"]
    return result


def load() -> str:
    return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---- the batched section: the corpus, the sampler, packing efficiency ----------------------------
class CachedLengthLatents:
    """Stands in for the latent cache (datamodules.latents.LatentStore): name -> [frames, D]
    latents of exactly the cached length (the waveform padded to whole patches), random values
    (a step's speed does not depend on them), drawn once per name in a fixed order."""

    def __init__(self, frames: dict[str, int], dim: int, seed: int = 0):
        self.folder, self.frames, self.dim = "(cached lengths, random values)", frames, dim
        g = torch.Generator().manual_seed(seed)
        self._latents = {name: torch.randn(n, dim, generator=g) for name, n in frames.items()}

    def __contains__(self, name: str) -> bool:
        return name in self.frames

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._latents[name]


def corpus_dataset(cfg):
    """The TTS training dataset of the embedded corpus, as TTSDataModule.setup builds it."""
    import soundfile as sf

    from datamodules.latents import latent_name
    from datamodules.manifest import read_configured
    from datamodules.tts import TTSDataset
    from voxlab.text import build_tokenizer

    entries, _ = read_configured(cfg.data, cfg.data.train_manifest, lazy_ok=False)
    samples_per_patch = 640 * cfg.model.patch_size  # the AudioVAE hop (2*5*8*8) at 16 kHz
    frames = {}
    for e in entries:
        n = -(-sf.info(str(e.audio)).frames // samples_per_patch) * cfg.model.patch_size
        frames[latent_name(e)] = frames[latent_name(e, prompt=True)] = n
    store = CachedLengthLatents(frames, cfg.model.feat_dim)
    return TTSDataset(entries, store, build_tokenizer(cfg.text), cfg.model.patch_size,
                      float(cfg.data.prompt_prob), int(cfg.seed))


def make_sampler(lengths, cfg, frame_budget: int, **settings) -> FrameBudgetBatchSampler:
    return FrameBudgetBatchSampler(lengths, frame_budget, cfg.data.max_batch_size, shuffle=True,
                                   seed=int(cfg.data.shuffle_seed), rank=0, world_size=1, **settings)


def packing(lengths, sampler: FrameBudgetBatchSampler, epochs: int = 5) -> dict:
    """Padding per batch and per epoch, budget use, batch sizes, batch-mate repeats (epoch to epoch)."""
    per_epoch, per_batch, fill, sizes, repeat = [], [], [], [], []
    previous = None
    for epoch in range(epochs):
        batches = sampler.all_batches(epoch)
        per_epoch.append(padding_share(lengths, batches))
        per_batch += [padding_share(lengths, [b]) for b in batches]
        fill.append(sum(len(b) * max(lengths[i] for i in b) for b in batches) / (len(batches) * sampler.frame_budget))
        sizes += [len(b) for b in batches]
        if previous is not None:
            repeat.append(batchmate_repeat(previous, batches))
        previous = batches
    q = statistics.quantiles(per_batch, n=10)
    return {"bucket_size": sampler.bucket_size, "jitter": sampler.jitter, "batches_per_epoch": len(previous),
            "pad_share_epoch": statistics.mean(per_epoch), "pad_share_epochs": per_epoch,
            "pad_share_batch_median": statistics.median(per_batch), "pad_share_batch_p10": q[0],
            "pad_share_batch_p90": q[-1], "pad_share_batch_max": max(per_batch),
            "budget_used": statistics.mean(fill), "batch_size_mean": statistics.mean(sizes),
            "batch_size_min": min(sizes), "batch_size_max": max(sizes),
            "batchmate_repeat": statistics.mean(repeat) if repeat else None}


def official_packing(lengths, batch_size: int, epochs: int = 5) -> dict:
    """The official trainer's batching: a DataLoader with shuffle=True and a fixed batch_size,
    right-padded to the longest item of each batch."""
    per_epoch = []
    for epoch in range(epochs):
        order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(epoch)).tolist()
        per_epoch.append(padding_share(lengths, [order[i:i + batch_size] for i in range(0, len(order), batch_size)]))
    return {"batch_size": batch_size, "pad_share_epoch": statistics.mean(per_epoch)}


def parse_settings(pairs) -> dict:
    out = {}
    for pair in pairs or []:
        key, _, value = pair.partition("=")
        if key not in ("bucket_size", "jitter"):
            raise SystemExit(f"--sampler: unknown key {key!r} (bucket_size, jitter)")
        out[key] = int(value) if key == "bucket_size" else float(value)
    return out


def frame_budget_of(size: str, cfg, given) -> int:
    for item in given or []:
        where, _, n = item.rpartition("=")
        if where in ("", size):
            return int(n)
    return int(cfg.data.frame_budget)


def bench_batched(size: str, args) -> dict:
    cfg = compose("d256s9", size, ["model.lm_init.mode=none"])
    budget = frame_budget_of(size, cfg, args.frame_budget)
    dataset = corpus_dataset(cfg)
    lengths = dataset.lengths()
    configured = make_sampler(lengths, cfg, budget)
    result = {"size": size, "items": len(lengths), "frame_budget": budget, "max_batch_size": int(cfg.data.max_batch_size),
              "prompt_prob": float(cfg.data.prompt_prob), "threads": torch.get_num_threads(),
              "optimizer_step": not args.no_optim, "length_min": min(lengths),
              "length_median": statistics.median(lengths), "length_max": max(lengths)}
    # packing: as configured, then other settings on the same corpus
    variants = [{}] + [{"bucket_size": b} for b in (128, 256, 512, 1024)] + [{"jitter": 0.0}, {"bucket_size": 256, "jitter": 0.0}]
    settings = parse_settings(args.sampler)
    if settings and settings not in variants:
        variants.append(settings)
    result["packing"] = [packing(lengths, make_sampler(lengths, cfg, budget, **v)) for v in variants]
    if args.corpus_copies > 1:  # a bigger corpus of the same length distribution: repeats fall with its size
        many = lengths * args.corpus_copies
        result["packing_copies"] = {"copies": args.corpus_copies, "items": len(many), "rows": [
            packing(many, make_sampler(many, cfg, budget, **v), epochs=2) for v in variants]}
    mean_batch = round(result["packing"][0]["batch_size_mean"])
    result["official_packing"] = [official_packing(lengths, b) for b in sorted({mean_batch, 16})]
    if args.batches <= 0:
        return result

    def batches_of(sampler):
        return [collate_tts([dataset[(i, 0)] for i in b]) for b in sampler.all_batches(0)[:args.batches]]

    timed = {"configured": batches_of(configured)}
    if settings:
        timed["setting"] = batches_of(make_sampler(lengths, cfg, budget, **settings))
    torch.manual_seed(0)
    ours = instantiate(cfg.model).train()
    # the official model's VAE is not used by its forward: the tiny one keeps memory down
    off = build_official(to_official_config(dict(ours.config), dtype="float32"), vae_config=TINY_VAE).train()
    ours_step, official_step = training_steps(ours, off, not args.no_optim)
    timed["official"] = [official_inputs(b) for b in timed["configured"]]
    steps = {"ours": (ours_step, "configured"), "official": (official_step, "official")}
    if settings:
        steps["ours_setting"] = (ours_step, "setting")
    for step, which in steps.values():
        step(timed[which][0])  # warm-up: allocator, AdamW state
    times = {key: [[] for _ in timed[which]] for key, (_, which) in steps.items()}
    loads = {key: [] for key in steps}
    for _ in range(args.repeats):
        for j in range(max(len(v) for v in timed.values())):
            for key, (step, which) in steps.items():
                if j >= len(timed[which]):
                    continue
                loads[key].append(float(Path("/proc/loadavg").read_text().split()[0]))
                t0 = time.perf_counter()
                step(timed[which][j])
                times[key][j].append(time.perf_counter() - t0)
    keys = list(steps)
    del ours, off, ours_step, official_step, steps
    gc.collect()
    for key in keys:
        batches = timed["setting" if key == "ours_setting" else "configured"]
        total = sum(b["text_tokens"].numel() for b in batches)
        real = sum(int(b["lengths"].sum()) for b in batches)
        seconds = sum(statistics.median(t) for t in times[key])
        result[key] = {"batches": [{"items": len(b["lengths"]), "longest": int(b["lengths"].max()),
                                    "positions": b["text_tokens"].numel(), "real": int(b["lengths"].sum()),
                                    "target_patches": int(b["loss_mask"].sum()), "median_s": statistics.median(t)}
                                   for b, t in zip(batches, times[key])],
                       "seconds": seconds, "positions_per_s": total / seconds, "real_positions_per_s": real / seconds,
                       "pad_share": 1 - real / total, "load_min": min(loads[key]), "load_max": max(loads[key])}
    result["ratio_ours_vs_official"] = result["ours"]["seconds"] / result["official"]["seconds"]
    return result


def print_packing(rows) -> None:
    print(f"  {'bucket':>6s} {'jitter':>6s} {'pad/epoch':>9s} {'pad/batch p10-med-p90 (max)':>28s} "
          f"{'budget used':>11s} {'batch size':>14s} {'batches':>7s} {'batch-mates again':>17s}")
    for k, p in enumerate(rows):
        print(f"  {p['bucket_size']:6d} {p['jitter']:6.2f} {p['pad_share_epoch']:9.1%} "
              f"{p['pad_share_batch_p10']:8.1%}-{p['pad_share_batch_median']:.1%}-{p['pad_share_batch_p90']:.1%} "
              f"({p['pad_share_batch_max']:.1%}) {p['budget_used']:11.1%} "
              f"{p['batch_size_mean']:5.1f} ({p['batch_size_min']}-{p['batch_size_max']}) "
              f"{p['batches_per_epoch']:7d} {p['batchmate_repeat']:17.1%}" + ("  <- as configured" if k == 0 else ""))


def print_batched(r: dict, args) -> None:
    print(f"[{r['size']}] packing: {r['items']} corpus items, packed lengths {r['length_min']}-{r['length_max']} "
          f"(median {r['length_median']:.0f}) positions, frame budget {r['frame_budget']}, max batch "
          f"{r['max_batch_size']}, prompt_prob {r['prompt_prob']}; 5 epochs")
    print_packing(r["packing"])
    if "packing_copies" in r:
        c = r["packing_copies"]
        print(f"[{r['size']}] packing, the corpus {c['copies']} times ({c['items']} items, 2 epochs)")
        print_packing(c["rows"])
    for p in r["official_packing"]:
        print(f"  official trainer (shuffle, batch_size {p['batch_size']}): {p['pad_share_epoch']:.1%} padded per epoch")
    if "ours" not in r:
        return
    what = "fwd+bwd+AdamW" if r["optimizer_step"] else "fwd+bwd"
    print(f"[{r['size']}] batched step, first {len(r['ours']['batches'])} batches of epoch 0, {what}, "
          f"{r['threads']} thread(s), median of {args.repeats} per batch")
    shown = r["ours"]["batches"]
    for b in shown if len(shown) <= 4 else []:
        print(f"  batch: {b['items']} items x {b['longest']} = {b['positions']} positions, {b['real']} real, "
              f"{b['target_patches']} target patches")
    if len(shown) > 4:
        print(f"  {len(shown)} batches of {min(b['items'] for b in shown)}-{max(b['items'] for b in shown)} items, "
              f"{sum(b['positions'] for b in shown)} positions, {sum(b['real'] for b in shown)} real, "
              f"{sum(b['target_patches'] for b in shown)} target patches")
    for key, label in (("ours", "ours, latent cache"), ("official", "official voxcpm"),
                       ("ours_setting", "ours, --sampler setting")):
        if key in r:
            m = r[key]
            print(f"  {label:24s} {m['seconds']:8.2f} s  {m['positions_per_s']:8.1f} positions/s  "
                  f"{m['real_positions_per_s']:8.1f} real/s  (pad {m['pad_share']:.1%}; load {m['load_min']:.1f}-{m['load_max']:.1f})")
    print(f"  ratio ours/official (time on the same batches): {r['ratio_ours_vs_official']:.3f}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "paper"], choices=["tiny", "paper"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--patches", type=int, default=50)
    ap.add_argument("--text-tokens", type=int, default=40)
    ap.add_argument("--no-optim", action="store_true", help="forward + backward only (all three)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--batches", type=int, default=2, help="sampler batches timed per size (0: packing only)")
    ap.add_argument("--frame-budget", nargs="*", default=None, metavar="[SIZE=]N",
                    help="override data.frame_budget (all sizes, or one: paper=1024)")
    ap.add_argument("--sampler", nargs="*", default=None, metavar="KEY=VALUE",
                    help="a second sampler setting to time (bucket_size=256 jitter=0.1)")
    ap.add_argument("--corpus-copies", type=int, default=1,
                    help="also report packing for the corpus repeated N times (a bigger corpus, same lengths)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["batch1", "batched"])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    for size in args.sizes:
        if "batch1" in args.skip:
            break
        print(load(), flush=True)
        r = bench_size(size, args)
        r["load_after"] = load()
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
              f"on the fly {r['ratio_onthefly_vs_official']:.3f} (goal <= 1.0); {r['load_after']}", flush=True)
    for size in args.sizes:
        if "batched" in args.skip:
            break
        r = bench_batched(size, args)
        results.append({"section": "batched", **r})
        print_batched(r, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

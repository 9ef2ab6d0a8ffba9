"""Generation speed: ours (models.tts) against the official `voxcpm` package (2.0.3), not a test.

One process builds the paper-size VoxCPM-0.5B (random weights, the official real-size AudioVAE)
with the official package, copies the same weights into ours (float32, bfloat16 and int8 weights:
TTSModel.set_precision), and prints, in one run:

1. generation at 1 and 2 threads: in each round the official fp32 `generate_with_prompt_cache`,
   then ours in fp32, bf16 and int8, on the same text, timesteps and CFG, each making exactly
   `--patches` patches (stop head disabled: the official gets a never-stop head and max_len =
   patches, ours `stop=False`), VAE decode included; medians of `--repeats` rounds, each ratio
   official RTF / ours;
2. batched synthesis (what evaluation runs): the first `--batch-items` items of a Seed-TTS-Eval
   test set (`--testset`, default the mini English set of `make data`): voice cloning, each item
   made at its ground truth's length; the official one item at a time (prompt cache, generate),
   ours in the evaluation's batches (`eval.generate.plan_batches`) of `--batches` sizes, 0 = as many
   as `--memory-gb` allows; per-utterance seconds and ratios (sections 2-4 run at the first
   `--threads` value);
3. streaming: time to the first waveform chunk and RTF of ours `generate_streaming` and the
   official `generate_with_prompt_cache_streaming`;
4. per module of ours (one run at 1 thread, each precision): calls, weight bytes read, time, GB/s:
   how far each is from the memory-bandwidth floor;
5. with `--model PATH` (a trained model): the max latent difference of bf16 and int8 from fp32.

Peak memory = resident model bytes (parameters, buffers, packed CPU weights, int8 weights, the
official's preallocated KV caches) + the peak resident-set growth during the runs (Linux
/proc/self/clear_refs). The machine's load average (/proc/loadavg) is printed beside each section:
timings on a shared machine are disturbed, so compare within a round.

    .venv/bin/python benchmarks/bench_inference.py [--patches 12] [--repeats 3] [--threads 2 1]
        [--batches 1 4 16] [--testset meta.lst] [--batch-items 16] [--precisions float32 bfloat16 int8] [--skip batch stream profile]
        [--model runs/d256s9/version_1] [--size 0.5b|small] [--json out.json]

`--size small` runs the tiny test configuration (a smoke run in seconds).

Where the official loop spends time that ours does not (CPU): every TSLM/RALM step attends over
the whole preallocated cache (max_length 4096 slots) with a mask instead of the filled slots; the
LocDiT recomputes its time and dt embedding MLPs at every Euler step; the prefill runs the LocEnc
over every prefix position (text ones too); its many-row Linear calls (LocDiT: 2 x 5 tokens,
LocEnc: 3) go through MKL's small-M sgemm, slow on this AMD CPU, where ours uses pre-packed
oneDNN weights (models.cpu_linear); and its streaming re-decodes the last 3 patches at every step,
where ours carries the causal decoder's state (AudioVAE.stream_decoder).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the official loop's progress bar
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from models.audiovae import PAPER_CONFIG, AudioVAE  # noqa: E402
from models.cpu_linear import Int8Linear, cpu_summary  # noqa: E402
from models.official import from_official_config  # noqa: E402
from models.official_reference import (SMALL_VAE, backbone_state_dict, build_official,  # noqa: E402
                                       official_0_5b_config, small_official_config, tiny_tokenizer)
from models.tts import TTSModel  # noqa: E402
from voxlab.config import instantiate  # noqa: E402
from voxlab.text import HFTokenizer  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away."
RATE = 16000
SHORT = {"float32": "fp32", "bfloat16": "bf16", "int8": "int8"}
TARGETS = {"float32": 1.8, "bfloat16": 3.0, "int8": 4.0, "batch": 8.0}  # issue 17's CPU targets


class NeverStop(torch.nn.Module):
    def forward(self, x):
        return torch.stack([torch.ones_like(x[..., 0]), torch.zeros_like(x[..., 0])], -1)


def load_avg() -> str:
    try:
        return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "load ?"


# ---- memory -----------------------------------------------------------------------------------
def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def weight_bytes(module: torch.nn.Module, with_embeddings: bool = True) -> int:
    """Bytes of the weights a call reads: parameters and buffers, the packed copy where a Linear has
    one (the kernel reads that, not the parameter), int8 weights; embeddings only when asked (a
    step reads a few rows of them)."""
    n = 0
    for m in module.modules():
        if isinstance(m, torch.nn.Embedding) and not with_embeddings:
            continue
        if isinstance(m, Int8Linear):
            n += m.in_features * m.out_features + 8 * m.out_features  # int8 weight, scale and bias
            continue
        packed = m.__dict__.get("_packed_weight")
        own = list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
        if packed is not None:
            own = [t for t in own if t is not m.weight] + [packed]
        n += sum(t.numel() * t.element_size() for t in own)
    return n


def resident_bytes(model) -> int:
    n = weight_bytes(model)
    for m in model.modules():  # the official's static KV caches
        cache = getattr(m, "kv_cache", None)
        if cache is not None and hasattr(cache, "kv_cache"):
            n += cache.kv_cache.numel() * cache.kv_cache.element_size()
    return n


def timed(fn, device: str) -> tuple[float, object, int | None]:
    """(seconds, fn(), peak RSS growth in bytes or None)."""
    rss0, reset = _status_kb("VmRSS"), _reset_peak()
    if device != "cpu":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device != "cpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = _status_kb("VmHWM")
    return seconds, out, (peak - rss0) * 1024 if reset and peak and rss0 else None


# ---- models -----------------------------------------------------------------------------------
def build(device: str, size: str, precisions: list[str], vae_dtype: str = "float32"):
    t0 = time.perf_counter()
    cfg, vae_cfg = (official_0_5b_config(), {}) if size == "0.5b" else (small_official_config(), SMALL_VAE)
    off = build_official(cfg, vae_config=vae_cfg)  # {}: the real-size AudioVAE
    bb = instantiate(from_official_config(cfg))
    bb.load_state_dict(backbone_state_dict(off), strict=True)
    off.stop_head = NeverStop()
    vae = AudioVAE(**(PAPER_CONFIG if size == "0.5b" else SMALL_VAE))
    vae.load_state_dict({k[len("audio_vae."):]: v for k, v in off.state_dict().items() if k.startswith("audio_vae.")})
    tok_dir = tempfile.mkdtemp(prefix="bench_tokenizer_")
    tiny_tokenizer().save_pretrained(tok_dir)
    tok = HFTokenizer(tok_dir)
    ours = {}
    for name in precisions:  # each its own copy of the backbone, the VAE shared
        model = TTSModel(bb if name == precisions[-1] else copy.deepcopy(bb), vae, tok).to(device)
        model.set_precision(name)
        ours[name] = model.optimize() if device == "cpu" else model
    next(iter(ours.values())).set_vae_precision(vae_dtype)  # the VAE is shared by ours' models
    off.to(device)
    if device != "cpu":  # the official caches live on its configured device
        off.base_lm.setup_cache(1, cfg["max_length"], device, torch.float32)
        off.residual_lm.setup_cache(1, cfg["max_length"], device, torch.float32)
    off.device = device
    print(f"built the official model and ours in {', '.join(precisions)} ({size}) in "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return off, ours


def run_official(off, patches, timesteps, cfg, text=TEXT):
    wav, _, feats = off.generate_with_prompt_cache(target_text=text, prompt_cache=None, max_len=patches,
                                                   inference_timesteps=timesteps, cfg_value=cfg)
    assert feats.shape[0] == patches, feats.shape
    return wav.shape[-1]


def run_ours(model, patches, timesteps, cfg, texts=(TEXT,)):
    out = model.synthesize_batch(list(texts), cfg=cfg, timesteps=timesteps, max_len=patches, stop=False, seed=0)
    assert all(s.patches.shape[0] == patches for s in out)
    return sum(s.wav.numel() for s in out)


def first_chunk(chunks) -> tuple[float, int]:
    """(seconds to the first chunk, total samples) of a chunk iterator, consumed to its end."""
    t0 = time.perf_counter()
    first, samples = None, 0
    for c in chunks:
        if first is None:
            first = time.perf_counter() - t0
        samples += c.shape[-1]
    return first, samples


# ---- sections ---------------------------------------------------------------------------------
def bench_generation(off, ours, args) -> list[dict]:
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for model in [off, *ours.values()]:  # warm-up: packing, allocator, first-call costs
            (run_official if model is off else run_ours)(model, 3, args.timesteps, args.cfg)
        runs: dict[str, list] = {"official": []} | {name: [] for name in ours}
        before = load_avg()
        for r in range(args.repeats):
            for name in runs:
                fn, model = (run_official, off) if name == "official" else (run_ours, ours[name])
                seconds, samples, grow = timed(lambda: fn(model, args.patches, args.timesteps, args.cfg), args.device)
                runs[name].append((seconds / (samples / RATE), grow, seconds))
                print(f"  {threads} thread(s) round {r + 1}: {name:8s} RTF {runs[name][-1][0]:.3f}", file=sys.stderr)
        load = f"{before} -> {load_avg()}"
        off_rtfs = [x for x, _, _ in runs["official"]]
        for name in runs:
            rtfs = [x for x, _, _ in runs[name]]
            model = off if name == "official" else ours[name]
            grows = [g for _, g, _ in runs[name] if g is not None]
            row = {"section": "generate", "threads": threads, "impl": "official" if name == "official" else "ours",
                   "dtype": "float32" if name == "official" else name, "rtf_median": statistics.median(rtfs),
                   "rtfs": [round(x, 4) for x in rtfs], "load": load,
                   "seconds_median": statistics.median(x for _, _, x in runs[name]),
                   "peak_mb": round((resident_bytes(model) + max(grows, default=0)) / 2**20)}
            if name != "official":  # per round: official / ours of the same round, then the median
                row["ratio"] = statistics.median(o / u for o, u in zip(off_rtfs, rtfs))
                row["target"] = TARGETS.get(name)
            rows.append(row)
    return rows


def eval_items(args, model) -> tuple[list, dict[str, int]]:
    """The test set's first `--batch-items` items and each one's length in patches: its ground
    truth's duration (random weights never stop, so both implementations make exactly that many).
    `--testset none` (the default at `--size small`): texts of different lengths, no prompt,
    `--patches` each."""
    import soundfile as sf

    from eval.testset import TestItem, read_testset

    if args.testset == "none":
        words = TEXT.split()
        items = [TestItem(f"text{i}", "", None, " ".join(words[:max(3, len(words) - i)]))
                 for i in range(args.batch_items)]
        return items, {it.utt: args.patches for it in items}
    items = read_testset(args.testset, limit=args.batch_items)
    seconds_per_patch = model.backbone.patch_size * model.vae.hop_length / model.input_sample_rate
    return items, {it.utt: max(3, round(sf.info(str(it.gt_wav)).duration / seconds_per_patch)) for it in items}


def run_official_items(off, items, patches, timesteps, cfg) -> None:
    """One item at a time, as the official package clones a voice: prompt cache, then generate."""
    for it in items:
        cache = off.build_prompt_cache(prompt_text=it.prompt_text, prompt_wav_path=str(it.prompt_wav)) \
            if it.prompt_wav else None
        _, _, feats = off.generate_with_prompt_cache(target_text=it.target_text, prompt_cache=cache,
                                                     max_len=patches[it.utt], inference_timesteps=timesteps,
                                                     cfg_value=cfg)
        context = 0 if cache is None else 2  # its latents start with the 2 prompt patches decoded in front
        assert feats.shape[0] - context == patches[it.utt], (feats.shape, patches[it.utt])


def run_ours_items(model, batches, patches, timesteps, cfg, keep_prompts: bool = False) -> None:
    """keep_prompts: the prompt latents of an earlier run are reused (an evaluation during training
    at its second checkpoint); else encoded again, as a first evaluation does."""
    if not keep_prompts:
        model.forget_prompts()
    for part in batches:
        caps = [patches[it.utt] for it in part]
        out = model.synthesize_batch([it.target_text for it in part],
                                     [str(it.prompt_wav) if it.prompt_wav else None for it in part],
                                     [it.prompt_text or None for it in part], cfg=cfg, timesteps=timesteps, max_len=caps,
                                     stop=False, seed=0)
        assert [s.patches.shape[0] for s in out] == caps


def bench_batched(off, ours, args) -> list[dict]:
    """Per-utterance seconds on the test set's items (voice cloning, each at its ground truth's
    length): the official one by one against ours in the evaluation's batches (`eval.generate.
    plan_batches`: sorted by text length; batch 0 = as many as the memory budget allows)."""
    from eval.generate import plan_batches

    torch.set_num_threads(args.threads[0])
    first = next(iter(ours.values()))
    items, patches = eval_items(args, first)
    n, total = len(items), sum(patches.values())
    print(f"  {n} items of {args.testset}: {total} patches ({total * 0.08 / n:.2f} s of audio per item)",
          file=sys.stderr)
    warm = items[:1], {items[0].utt: 3}
    run_official_items(off, *warm, args.timesteps, args.cfg)
    before = load_avg()
    official_s = timed(lambda: run_official_items(off, items, patches, args.timesteps, args.cfg), args.device)[0] / n
    rows = [{"section": "batch", "impl": "official", "dtype": "float32", "batch": 1, "threads": args.threads[0],
             "per_utt_s": official_s, "items": n, "patches": total, "load": f"{before} -> {load_avg()}"}]
    print(f"  official one by one: {official_s:.2f} s per utterance", file=sys.stderr)
    for name in args.batch_precisions:
        run_ours_items(ours[name], [warm[0]], warm[1], args.timesteps, args.cfg)
        for b in args.batches:
            batches = plan_batches(ours[name], items, b, args.memory_gb)
            before = load_avg()
            seconds, _, grow = timed(lambda: run_ours_items(ours[name], batches, patches, args.timesteps, args.cfg),
                                     args.device)
            per_utt = seconds / n
            rows.append({"section": "batch", "impl": "ours", "dtype": name, "batch": b, "threads": args.threads[0],
                         "sizes": [len(part) for part in batches], "per_utt_s": per_utt,
                         "official_per_utt_s": official_s, "ratio": official_s / per_utt, "target": TARGETS["batch"],
                         "load": f"{before} -> {load_avg()}",
                         "peak_mb": round((resident_bytes(ours[name]) + (grow or 0)) / 2**20)})
            print(f"  ours {name} batch {b or 'auto'} {rows[-1]['sizes']}: {per_utt:.2f} s per utterance, "
                  f"{official_s / per_utt:.2f}x", file=sys.stderr)
        # The same batches again with the prompt latents kept: every evaluation after the first
        # during training (same prompts, same VAE).
        before = load_avg()
        seconds = timed(lambda: run_ours_items(ours[name], batches, patches, args.timesteps, args.cfg,
                                               keep_prompts=True), args.device)[0]
        rows.append({**rows[-1], "prompts_kept": True, "per_utt_s": seconds / n, "ratio": official_s * n / seconds,
                     "load": f"{before} -> {load_avg()}"})
        print(f"  ours {name} batch {b or 'auto'}, prompts kept: {seconds / n:.2f} s per utterance", file=sys.stderr)
    return rows


def bench_streaming(off, ours, args) -> list[dict]:
    torch.set_num_threads(args.threads[0])
    rows = []
    runs = {"official": lambda: (wav for wav, _, _ in off.generate_with_prompt_cache_streaming(
        target_text=TEXT, prompt_cache=None, max_len=args.patches, inference_timesteps=args.timesteps,
        cfg_value=args.cfg))}
    for name, model in ours.items():
        runs[name] = (lambda m: lambda: m.generate_streaming(TEXT, cfg=args.cfg, timesteps=args.timesteps,
                                                             max_len=args.patches, stop=False, seed=0))(model)
    for name, make in runs.items():
        before = load_avg()
        seconds, (first, samples), grow = timed(lambda: first_chunk(make()), args.device)
        model = off if name == "official" else ours[name]
        rows.append({"section": "stream", "impl": "official" if name == "official" else "ours",
                     "dtype": "float32" if name == "official" else name, "threads": args.threads[0],
                     "first_chunk_s": first, "rtf": seconds / (samples / RATE), "load": f"{before} -> {load_avg()}",
                     "peak_mb": round((resident_bytes(model) + (grow or 0)) / 2**20)})
        print(f"  stream {name:8s}: first chunk {first:.3f} s, RTF {rows[-1]['rtf']:.3f}", file=sys.stderr)
    return rows


class ModuleClock:
    """Wraps methods of ours' modules to add up calls, seconds and weight bytes read (outermost
    wrapped call only, so nested modules are not counted twice)."""

    def __init__(self):
        self.stats: dict[str, list] = {}
        self.depth = 0
        self.undo = []

    def wrap(self, label: str, obj, method: str, nbytes: int) -> None:
        original = getattr(obj, method)
        stat = self.stats.setdefault(label, [0, 0.0, 0])

        def timed_call(*a, **kw):
            if self.depth:
                return original(*a, **kw)
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                self.depth -= 1
                stat[0] += 1
                stat[1] += time.perf_counter() - t0
                stat[2] += nbytes

        setattr(obj, method, timed_call)
        self.undo.append((obj, method))

    def restore(self) -> None:
        for obj, method in self.undo:
            obj.__dict__.pop(method, None)


def profile_modules(ours, args) -> list[dict]:
    torch.set_num_threads(args.threads[0])
    rows = []
    for name, model in ours.items():
        bb, clock = model.backbone, ModuleClock()
        est = bb.feat_decoder.estimator
        clock.wrap("prefill (TSLM+RALM)", bb, "prefill", 0)
        clock.wrap("TSLM step", bb.base_lm, "forward_step", weight_bytes(bb.base_lm, with_embeddings=False))
        clock.wrap("RALM step", bb.residual_lm, "forward_step", weight_bytes(bb.residual_lm))
        clock.wrap("LocEnc", bb.feat_encoder, "forward", weight_bytes(bb.feat_encoder))
        clock.wrap("LocDiT (per Euler step)", est.decoder, "forward", weight_bytes(est.decoder))
        for proj in ("lm_to_dit_proj", "res_to_dit_proj", "stop_proj", "enc_to_lm_proj"):
            clock.wrap("projections + stop head", getattr(bb, proj), "forward", weight_bytes(getattr(bb, proj)))
        clock.wrap("VAE decode", model.vae, "decode", weight_bytes(model.vae))
        t0 = time.perf_counter()
        try:
            run_ours(model, args.patches, args.timesteps, args.cfg)
        finally:
            clock.restore()
        total = time.perf_counter() - t0
        for label, (calls, seconds, nbytes) in clock.stats.items():
            rows.append({"section": "profile", "dtype": name, "module": label, "calls": calls, "seconds": seconds,
                         "share": seconds / total, "gb_read": nbytes / 1e9,
                         "gb_s": nbytes / 1e9 / seconds if nbytes and seconds else None})
        rows.append({"section": "profile", "dtype": name, "module": "whole run", "calls": 1, "seconds": total,
                     "share": 1.0, "gb_read": None, "gb_s": None, "load": load_avg()})
    return rows


def latent_differences(path: str, precisions: list[str], patches: int) -> list[dict]:
    """Max |latent - fp32 latent| of a trained model loaded in each precision (temperature 0, the
    stop head off, `patches` patches of each of a few texts)."""
    import models

    texts = [TEXT.lower(), "a short one.", "the last of the three texts is a little longer than the others."]
    runs = {}
    for name in ["float32"] + [x for x in precisions if x != "float32"]:
        model = models.load(path, dtype=name)
        runs[name] = [s.patches.float() for s in model.synthesize_batch(texts, temperature=0.0, max_len=patches,
                                                                           stop=False)]
    ref = runs.pop("float32")
    span = max(r.abs().max().item() for r in ref)
    return [{"section": "latent", "dtype": name, "model": path, "max_abs_diff": max((a - b).abs().max().item()
             for a, b in zip(ref, got)), "latent_max_abs": span} for name, got in runs.items()]


# ---- report -----------------------------------------------------------------------------------
def _target(row) -> str:
    t = row.get("target")
    if t is None:
        return ""
    return f"  target {t:g}x: {'reached' if row['ratio'] >= t else 'not reached'}"


def print_report(rows: list[dict], args) -> None:
    audio = f" ({args.patches * 0.08:.2f} s audio)" if args.size == "0.5b" else ""
    print(f"\n{args.size}, {args.device}, {args.patches} patches{audio}, "
          f"{args.timesteps} steps, cfg {args.cfg}, medians of {args.repeats} rounds (load = 1/5/15-min averages)")
    print(f"CPU: {args.cpu}")
    gen = [r for r in rows if r["section"] == "generate"]
    if gen:
        print("\n1. generation (RTF = compute s per audio s; ratio = official fp32 RTF / ours, per round)")
        for r in gen:
            ratio = f"ratio {r['ratio']:.2f}x" if "ratio" in r else "          "
            print(f"   {r['threads']} thr  {r['impl']:8s} {SHORT.get(r['dtype'], r['dtype']):4s}  RTF {r['rtf_median']:6.3f}"
                  f"  {ratio}  peak {r['peak_mb']:6d} MB  [{r['load']}]{_target(r)}")
    bat = [r for r in rows if r["section"] == "batch"]
    if bat:
        off_row, ours_rows = bat[0], bat[1:]
        print(f"\n2. batched synthesis, {off_row['threads']} thread(s), {off_row['items']} test-set items "
              f"({off_row['patches']} patches): per-utterance seconds (official one by one: "
              f"{off_row['per_utt_s']:.2f} s) [{off_row['load']}]")
        for r in ours_rows:
            size = (f"batch {r['batch']:2d}" if r["batch"] else "batch auto") + (
                " (prompts kept)" if r.get("prompts_kept") else "")
            print(f"   ours {SHORT[r['dtype']]:4s} {size} {r['sizes']}: {r['per_utt_s']:6.2f} s/utt  ratio "
                  f"{r['ratio']:5.2f}x  peak {r['peak_mb']:6d} MB  [{r['load']}]{_target(r)}")
    st = [r for r in rows if r["section"] == "stream"]
    if st:
        print(f"\n3. streaming, {st[0]['threads']} thread(s): time to the first chunk, RTF of the whole stream")
        for r in st:
            print(f"   {r['impl']:8s} {SHORT[r['dtype']]:4s}: first chunk {r['first_chunk_s']:6.3f} s  RTF "
                  f"{r['rtf']:6.3f}  peak {r['peak_mb']:6d} MB  [{r['load']}]")
    prof = [r for r in rows if r["section"] == "profile"]
    if prof:
        print(f"\n4. ours per module, {args.threads[0]} thread(s), one run: calls, weight bytes read, time, GB/s")
        for r in prof:
            read = f"{r['gb_read']:7.2f} GB" if r["gb_read"] else "          "
            rate = f"{r['gb_s']:6.1f} GB/s" if r["gb_s"] else ""
            extra = f"  [{r['load']}]" if "load" in r else ""
            print(f"   {SHORT[r['dtype']]:4s} {r['module']:26s} {r['calls']:5d} calls {read} {r['seconds']:7.2f} s "
                  f"({100 * r['share']:4.1f}%) {rate}{extra}")
    lat = [r for r in rows if r["section"] == "latent"]
    if lat:
        print(f"\n5. {lat[0]['model']}: max |latent - fp32 latent| (temperature 0, {args.patches} patches x 3 texts; "
              f"latents reach {lat[0]['latent_max_abs']:.2f})")
        for r in lat:
            print(f"   {SHORT[r['dtype']]:4s} {r['max_abs_diff']:.4f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patches", type=int, default=12, help="patches per utterance (12.5 per second of audio)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timesteps", type=int, default=10)
    p.add_argument("--cfg", type=float, default=2.0)
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                   help="section 1 runs each; sections 2-4 the first (default 2: this machine's cores)")
    p.add_argument("--precisions", nargs="+", default=["float32", "bfloat16", "int8"],
                   choices=["float32", "bfloat16", "int8"])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16],
                   help="batch sizes of section 2; 0: as many as --memory-gb allows (what `make eval` does)")
    p.add_argument("--testset", default=None,
                   help="section 2's items (voice cloning at each ground truth's length); default: the mini "
                        "English set of `make data` (0.5b), none (small: texts alone, --patches each)")
    p.add_argument("--batch-items", type=int, default=16, help="how many of its items")
    p.add_argument("--memory-gb", type=float, default=2.0, help="batch 0's memory budget (`make eval`'s default)")
    p.add_argument("--batch-precisions", nargs="+", default=None, help="default: every --precisions")
    p.add_argument("--skip", nargs="*", default=[], choices=["generate", "batch", "stream", "profile"])
    p.add_argument("--model", default=None, help="also: max latent difference of this trained model per precision")
    p.add_argument("--vae-dtype", default="float32", choices=["float32", "bfloat16"],
                   help="ours' AudioVAE weights (the official's stays float32)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", default="0.5b", choices=["0.5b", "small"])
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.testset is None:
        args.testset = str(ROOT / "data/corpus/seedtts/en/meta.lst") if args.size == "0.5b" else "none"
    if args.device != "cpu":
        args.precisions = [x for x in args.precisions if x != "int8"]  # int8 is a CPU kernel
    args.batch_precisions = args.batch_precisions or list(args.precisions)
    args.cpu = cpu_summary()
    print(f"start: {load_avg()}; {args.cpu}", file=sys.stderr)
    off, ours = build(args.device, args.size, args.precisions, args.vae_dtype)
    rows: list[dict] = []
    with torch.inference_mode():
        if "generate" not in args.skip:
            rows += bench_generation(off, ours, args)
        if "batch" not in args.skip:
            rows += bench_batched(off, ours, args)
        if "stream" not in args.skip:
            rows += bench_streaming(off, ours, args)
        if "profile" not in args.skip:
            rows += profile_modules(ours, args)
    if args.model:
        rows += latent_differences(args.model, args.precisions, args.patches)
    print_report(rows, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

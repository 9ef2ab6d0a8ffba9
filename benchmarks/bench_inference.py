"""Generation speed: ours (models.tts) against the official `voxcpm` package (2.0.3), not a test.

One process builds the paper-size VoxCPM-0.5B (random weights, the official real-size AudioVAE)
with the official package, copies the same weights into ours, and times both on the same text,
timesteps and CFG, generating exactly `--patches` patches (stop head disabled in both: the official
model gets a never-stop head and a max_len equal to the patch count; ours `stop=False`), VAE decode
included. Runs alternate (official, ours, official, ...) so machine load hits both alike; the
median (and best) of `--repeats` runs is reported with each implementation's real-time factor
(seconds of compute per second of audio), their ratios and peak memory:
- peak memory = resident model bytes (parameters, buffers, ours' packed CPU weights, the official's
  preallocated KV caches) + the peak resident-set growth during a run (Linux: /proc/self/clear_refs).

    .venv/bin/python benchmarks/bench_inference.py [--patches 25] [--repeats 3] [--threads 1]
        [--timesteps 10] [--cfg 2.0] [--device cpu] [--dtype float32] [--json out.json]

Threads default to 1: on a small shared machine several OpenMP threads stall each other.
`--size small` runs the tiny test configuration instead (a smoke run of this script in seconds).

Where the official loop spends time that ours does not (CPU): every TSLM/RALM step attends over
the whole preallocated cache (max_length 4096 slots) with a mask instead of the filled slots; the
LocDiT recomputes its time and dt embedding MLPs at every Euler step; the prefill runs the LocEnc
over every prefix position (text ones too); and its many-row Linear calls (LocDiT: 2 x 5 tokens,
LocEnc: 3) go through MKL's small-M sgemm, slow on this AMD CPU, where ours uses pre-packed
oneDNN weights (models.cpu_linear).
"""
from __future__ import annotations

import argparse
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
from models.official import from_official_config  # noqa: E402
from models.tts import TTSModel  # noqa: E402
from models.official_reference import (SMALL_VAE, backbone_state_dict, build_official, official_0_5b_config,  # noqa: E402
                             small_official_config, tiny_tokenizer)
from voxlab.config import instantiate  # noqa: E402
from voxlab.text import HFTokenizer  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away."


class NeverStop(torch.nn.Module):
    def forward(self, x):
        return torch.stack([torch.ones_like(x[..., 0]), torch.zeros_like(x[..., 0])], -1)


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


def tensor_bytes(module: torch.nn.Module) -> int:
    n = sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))
    for m in module.modules():  # ours: packed CPU weights; official: static KV caches
        packed = m.__dict__.get("_packed_weight")
        if packed is not None:
            n += packed.numel() * packed.element_size()
        cache = getattr(m, "kv_cache", None)
        if cache is not None and hasattr(cache, "kv_cache"):
            n += cache.kv_cache.numel() * cache.kv_cache.element_size()
    return n


def build(device: str, dtype: torch.dtype, size: str = "0.5b"):
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
    ours = TTSModel(bb, vae, HFTokenizer(tok_dir))
    for model in (off, ours):
        model.to(device)
    off.to(dtype)
    off.audio_vae.float()
    ours.backbone.to(dtype)
    if device == "cpu":
        ours.optimize()
    if device != "cpu":  # the official caches live on its configured device
        off.base_lm.setup_cache(1, cfg["max_length"], device, dtype)
        off.residual_lm.setup_cache(1, cfg["max_length"], device, dtype)
    off.device = device
    off.config.dtype = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
    print(f"built both {size} models in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return off, ours


def run_official(off, patches, timesteps, cfg):
    wav, _, feats = off.generate_with_prompt_cache(target_text=TEXT, prompt_cache=None, max_len=patches,
                                                   inference_timesteps=timesteps, cfg_value=cfg)
    assert feats.shape[0] == patches, feats.shape
    return wav.shape[-1]


def run_ours(ours, patches, timesteps, cfg):
    s = ours.synthesize_batch([TEXT], cfg=cfg, timesteps=timesteps, max_len=patches, stop=False, seed=0)[0]
    assert s.patches.shape[0] == patches, s.patches.shape
    return s.wav.numel()


def measure(fn, model, args, device):
    rss0 = _status_kb("VmRSS")
    reset = _reset_peak()
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    samples = fn(model, args.patches, args.timesteps, args.cfg)
    if device != "cpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = _status_kb("VmHWM")
    grow = (peak - rss0) * 1024 if reset and peak and rss0 else None
    gpu = torch.cuda.max_memory_allocated() if device != "cpu" else None
    return seconds, samples, grow, gpu


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patches", type=int, default=25, help="patches per utterance (12.5 per second of audio)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timesteps", type=int, default=10)
    p.add_argument("--cfg", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--size", default="0.5b", choices=["0.5b", "small"])
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    off, ours = build(args.device, dtype, args.size)
    runners = {"official": (run_official, off), "ours": (run_ours, ours)}
    with torch.inference_mode():
        for fn, model in runners.values():  # warm-up (packing, allocator, first-call costs)
            fn(model, 3, args.timesteps, args.cfg)
        results = {name: [] for name in runners}
        for r in range(args.repeats):
            for name, (fn, model) in runners.items():
                seconds, samples, grow, gpu = measure(fn, model, args, args.device)
                results[name].append((seconds, samples, grow, gpu))
                print(f"run {r + 1}/{args.repeats} {name:8s}: {seconds:6.2f} s for {samples / 16000:.2f} s of audio "
                      f"(RTF {seconds / (samples / 16000):.3f})", file=sys.stderr)
    report = {"size": args.size, "device": args.device, "dtype": args.dtype, "threads": args.threads,
              "patches": args.patches,
              "timesteps": args.timesteps, "cfg": args.cfg, "repeats": args.repeats, "text": TEXT}
    for name, (_, model) in runners.items():
        runs = results[name]
        audio = runs[0][1] / 16000
        rtfs = [s / (n / 16000) for s, n, _, _ in runs]
        grows = [g for _, _, g, _ in runs if g is not None]
        report[name] = {"rtf_median": round(statistics.median(rtfs), 4), "rtf_best": round(min(rtfs), 4),
                        "rtfs": [round(x, 4) for x in rtfs],
                        "audio_s": audio, "model_bytes_mb": round(tensor_bytes(model) / 2**20, 1),
                        "peak_mb": round((tensor_bytes(model) + max(grows)) / 2**20, 1) if grows else None}
        if runs[0][3] is not None:
            report[name]["gpu_peak_mb"] = round(max(r[3] for r in runs) / 2**20, 1)
    report["speedup"] = round(report["official"]["rtf_median"] / report["ours"]["rtf_median"], 3)
    paired = [o / u for o, u in zip(report["official"]["rtfs"], report["ours"]["rtfs"])]  # back-to-back runs
    report["speedup_paired_median"] = round(statistics.median(paired), 3)
    report["speedup_best"] = round(report["official"]["rtf_best"] / report["ours"]["rtf_best"], 3)
    print(f"\n{args.size}, {args.device} {args.dtype}, {args.threads} thread(s), {args.patches} patches "
          f"({report['ours']['audio_s']:.2f} s audio), {args.timesteps} steps, cfg {args.cfg}, median of {args.repeats}:")
    for name in runners:
        r = report[name]
        print(f"  {name:8s} RTF {r['rtf_median']:.3f} (best {r['rtf_best']:.3f})   peak memory {r['peak_mb']} MB "
              f"(model {r['model_bytes_mb']} MB)" + (f", GPU peak {r['gpu_peak_mb']} MB" if "gpu_peak_mb" in r else ""))
    print(f"  speed-up (official RTF / ours): {report['speedup']:.2f}x "
          f"(median of the back-to-back run pairs: {report['speedup_paired_median']:.2f}x, "
          f"best run against best run: {report['speedup_best']:.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

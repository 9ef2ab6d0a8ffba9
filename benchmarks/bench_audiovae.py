"""AudioVAE speed and memory on CPU (not a test).

- encode + decode real-time factor (seconds of compute per second of audio) for the `paper` size
  on a 10 s clip and the `tiny` size, with the posterior mean;
- tiny training: generator steps per second through AudioVAEModule.training_step under a real
  Lightning Trainer, on random crops shaped like the tiny scale's batches (mel-only warm-up steps
  and adversarial steps are timed separately);
- peak memory: each measurement runs in its own process and reports its max resident set size
  (resource.getrusage), beside the size after the imports alone.

Times are given as wall clock and as this process's CPU time: on a shared machine the wall clock
includes waiting for the cores, the CPU time is close to what an idle core would take.

    .venv/bin/python benchmarks/bench_audiovae.py [--threads 1] [--seconds 10] [--steps 10] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voxlab.config import compose, instantiate  # noqa: E402


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def rtf(scale: str, seconds: float, repeats: int) -> dict:
    model = instantiate(compose("audiovae", scale).model).eval()
    wav = torch.randn(1, 1, int(seconds * model.sample_rate)) * 0.1
    with torch.inference_mode():
        model.decode(model.encode(wav[..., : model.hop_length * 4]))  # warm-up
        runs = []
        for _ in range(repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            model.decode(model.encode(wav))
            runs.append((time.perf_counter() - w0, time.process_time() - c0))
    wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
    return {"scale": scale, "params": sum(p.numel() for p in model.parameters()), "clip_s": seconds,
            "encode_decode_wall_s": round(wall, 3), "rtf_wall": round(wall / seconds, 4),
            "encode_decode_cpu_s": round(cpu, 3), "rtf_cpu": round(cpu / seconds, 4)}


def train_speed(steps: int) -> dict:
    import lightning as L
    from torch.utils.data import DataLoader

    from lightning_modules.audiovae import AudioVAEModule

    cfg = compose("audiovae", "tiny")
    crop = int(cfg.data.crop_seconds * cfg.data.sample_rate)
    batch_size = min(int(cfg.data.frame_budget) // crop, int(cfg.data.max_batch_size))
    batch = {"audio": torch.randn(batch_size, 1, crop) * 0.1, "audio_lens": torch.full((batch_size,), crop),
             "text": [""] * batch_size, "utt": [str(i) for i in range(batch_size)],
             "speaker": [""] * batch_size, "lang": [""] * batch_size}

    class Timer(L.Callback):
        def __init__(self):
            self.times: list[tuple[float, float]] = []

        def on_train_batch_start(self, trainer, module, *args):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, trainer, module, *args):
            self.times.append((time.perf_counter() - self.t0, time.process_time() - self.c0))

    out = {"batch": f"{batch_size} x {crop} samples"}
    for phase, warmup in (("mel_only", 10**9), ("adversarial", 0)):
        module = AudioVAEModule(cfg.copy())
        module.cfg.module.warmup_steps = warmup
        timer = Timer()
        L.Trainer(max_steps=steps + 2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, limit_val_batches=0, callbacks=[timer]).fit(
            module, DataLoader([batch] * (steps + 2), batch_size=None))
        timed = timer.times[2:]  # the first steps include set-up
        wall = sorted(t[0] for t in timed)[len(timed) // 2]
        cpu = sorted(t[1] for t in timed)[len(timed) // 2]
        out[phase] = {"wall_s_per_step": round(wall, 3), "cpu_s_per_step": round(cpu, 3),
                      "steps_per_s_wall": round(1 / wall, 2), "steps_per_s_cpu": round(1 / cpu, 2)}
    out["params"] = AudioVAEModule(cfg).num_parameters()
    return out


PARTS = {"rtf_tiny": lambda a: rtf("tiny", a.seconds, a.repeats),
         "rtf_paper": lambda a: rtf("paper", a.seconds, a.repeats),
         "train_tiny": lambda a: train_speed(a.steps)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seconds", type=float, default=10.0, help="clip length for the RTF")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--steps", type=int, default=10, help="timed training steps per phase")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--part", choices=sorted(PARTS), default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.part:  # one measurement in this fresh process, so its peak memory is its own
        import lightning  # noqa: F401  (imports counted in the baseline)
        base = max_rss_mb()
        result = PARTS[args.part](args)
        result.update(rss_after_imports_mb=round(base, 1), peak_rss_mb=round(max_rss_mb(), 1))
        print(json.dumps(result))
        return
    results = {"threads": args.threads, "torch": torch.__version__}
    for part in ("rtf_tiny", "rtf_paper", "train_tiny"):
        cmd = [sys.executable, __file__, "--part", part, "--threads", str(args.threads), "--seconds",
               str(args.seconds), "--repeats", str(args.repeats), "--steps", str(args.steps)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[part] = json.loads(out.strip().splitlines()[-1])
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()

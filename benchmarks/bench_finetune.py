"""Fine-tuning step at paper size (VoxCPM-0.5B, random weights) on CPU: time and peak memory of a
full step and a LoRA step, ours beside the official `voxcpm` package (2.0.3). Not a test.

One step = forward (flow-matching + stop losses, weighted 1 + 1) + backward + AdamW step on one
item of `--text-tokens` text tokens and `--patches` latent patches, fp32:
- ours: `TTSModule` of `finetune_full` / `finetune_lora` (its losses and its configure_optimizers);
  `full+ckpt` adds model.gradient_checkpointing=true;
- official: `VoxCPMModel(..., lora_config)` frozen as `from_local(training=True)` freezes it, its
  `forward` and the torch AdamW of scripts/train_voxcpm_finetune.py over the trainable parameters.
Each configuration runs in its own process, one after the other (two 0.5B models with AdamW state
would not fit beside other work), `--steps` steps each; the time is the last step's (the first
also allocates the AdamW state), the memory the process's peak resident size over the steps
(VmHWM, reset after the model is built) and its size before them (weights). The load average
(`uptime`) is printed beside each row: this machine is shared.

    .venv/bin/python benchmarks/bench_finetune.py [--runs ours:full official:full ours:lora ...]
        [--steps 2] [--threads 1] [--patches 50] [--text-tokens 40] [--json out.json]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUNS = ("ours:full", "ours:full+ckpt", "official:full", "ours:lora", "official:lora")


def rss_gb(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process, in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError(f"/proc/self/status has no {field}")


def batch(vocab: int, text_tokens: int, patches: int, patch_size: int, feat_dim: int) -> dict:
    import torch

    from models.packing import collate_packed, pack_utterance
    g = torch.Generator().manual_seed(0)
    text = torch.randint(128, vocab, (text_tokens,), generator=g)  # clear of the 101/102 markers
    latents = torch.randn(patches * patch_size, feat_dim, generator=g)
    return collate_packed([pack_utterance(text, latents, patch_size=patch_size)])


def ours_step_fn(mode: str, official_cfg: dict, b: dict):
    import types

    from omegaconf import OmegaConf

    from lightning_modules.tts import TTSModule
    from models.official import from_official_config
    from voxlab.config import compose

    cfg = compose("finetune_lora" if mode == "lora" else "finetune_full", None, ["init.model=unused"])
    model = {**from_official_config(official_cfg), "lora": cfg.model.lora, "gradient_checkpointing": mode == "full+ckpt"}
    cfg.model = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(model), resolve=True))
    module = TTSModule(cfg).train()
    module._trainer = types.SimpleNamespace(max_steps=int(cfg.trainer.max_steps))  # configure_optimizers reads it
    opt = module.configure_optimizers()["optimizer"]

    def step():
        module._losses(b)["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step, module.model


def official_step_fn(mode: str, official_cfg: dict, b: dict):
    import torch

    from models.official_reference import SMALL_VAE, import_official, tiny_tokenizer
    from voxcpm.model.voxcpm import LoRAConfig

    off = import_official()
    cfg = off.VoxCPMConfig.model_validate({**official_cfg, "device": "cpu", "dtype": "float32"})
    lora = LoRAConfig(enable_lm=True, enable_dit=True, enable_proj=False, r=8, alpha=16) if mode == "lora" else None
    model = off.VoxCPMModel(cfg, tiny_tokenizer(), off.AudioVAE(off.AudioVAEConfig(**SMALL_VAE)), lora, device="cpu")
    del model.audio_vae  # as the official script does: training reads latents
    model = model.float().train()
    for name, p in model.named_parameters():  # from_local(training=True): with LoRA, only the adapters train
        p.requires_grad_(lora is None or "lora" in name)
    opt = torch.optim.AdamW((p for p in model.parameters() if p.requires_grad), lr=1e-4 if lora else 1e-5,
                            weight_decay=0.01)
    inputs = dict(text_tokens=b["text_tokens"], text_mask=b["text_mask"].int(), audio_feats=b["audio_feats"],
                  audio_mask=b["audio_mask"].int(), loss_mask=b["loss_mask"].int(),
                  position_ids=torch.zeros_like(b["text_tokens"]), labels=b["stop_labels"])

    def step():
        out = model(**inputs)
        sum(v for k, v in out.items() if k.startswith("loss/")).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step, model


def worker(run: str, args) -> dict:
    """One configuration in this process: build, reset the peak, `args.steps` steps."""
    import torch

    from models.official_reference import install_stubs, official_0_5b_config
    install_stubs()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    side, mode = run.split(":")
    official_cfg = official_0_5b_config()
    b = batch(official_cfg["lm_config"]["vocab_size"], args.text_tokens, args.patches, official_cfg["patch_size"],
              official_cfg["feat_dim"])
    make = ours_step_fn if side == "ours" else official_step_fn
    step, model = make(mode, official_cfg, b)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    gc.collect()
    before = rss_gb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM: the peak from here on
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"run": run, "params": params, "trainable": trainable, "rss_before_gb": before,
            "peak_gb": rss_gb("VmHWM"), "step_s": times[-1], "steps_s": times, "threads": args.threads}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--patches", type=int, default=50)
    ap.add_argument("--text-tokens", type=int, default=40)
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one run, JSON on the last stdout line
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error("--steps must be at least 1")
    if args.worker:
        print(json.dumps(worker(args.worker, args)), flush=True)
        return 0
    common = ["--steps", str(args.steps), "--threads", str(args.threads), "--patches", str(args.patches),
              "--text-tokens", str(args.text_tokens)]
    print(f"paper size (0.5B), fp32, batch 1: {args.text_tokens} text tokens + {args.patches} patches, "
          f"fwd+bwd+AdamW, {args.threads} thread(s), last of {args.steps} steps", flush=True)
    results = []
    for run in args.runs:
        load = os.getloadavg()[0]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        proc = subprocess.run([sys.executable, __file__, "--worker", run, *common], capture_output=True, text=True,
                              env=env)
        if proc.returncode != 0:
            print(f"  {run}: failed (exit {proc.returncode})\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 1
        r = {**json.loads(proc.stdout.strip().splitlines()[-1]), "load_before": load, "load_after": os.getloadavg()[0]}
        results.append(r)
        print(f"  {run:15s} {r['trainable'] / 1e6:8.2f} M trainable  {r['step_s']:7.1f} s/step  "
              f"peak {r['peak_gb']:5.1f} GB (weights etc. {r['rss_before_gb']:4.1f} GB)  "
              f"load {r['load_before']:.1f} -> {r['load_after']:.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

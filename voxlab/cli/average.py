"""`make average CKPTS="run folder | a.ckpt b.ckpt ..." [N=5] [OUT=...]`: the mean of the weights of
several checkpoints of one run, as one checkpoint (checkpoint averaging, as CosyVoice does for its
final model).

    python -m voxlab.cli.average CKPT_OR_RUN [CKPT ...] [--last N] [--out FILE]

A run folder stands for its step checkpoints (`checkpoints/step_*.ckpt`, plus the last checkpoint when it is
newer than all of them): the newest N by step are averaged. Checkpoint files are averaged as given.
Every floating-point tensor of `state_dict` is averaged (in float64, stored in its own dtype); other
tensors must be equal in all inputs. Everything else (config, VAE, tokenizer, step) comes from the
newest input, so the inputs must share their VAE, tokenizer and architecture (the `model` section but
its training-only keys), else one line names the two checkpoints. Optimizer and scheduler states
are left out, so the result is for `models.load`, `make eval`, `make synth`, `make app` and
`models.export`, not for RESUME. For a run trained with EMA (callbacks/ema.py) the checkpoints'
weights are the EMA ones, and those are averaged.
OUT (default `<run>/averaged/avg_last<N>_step<S>.ckpt`) must not exist: nothing is overwritten.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from voxlab.checkpoint import TOKENIZER_KEY, VAE_KEY, CheckpointError, atomic_torch_save, load_checkpoint, read_config
from voxlab.runs import checkpoint_dir, last_checkpoint, run_of_checkpoint

# Keys of the `model` section that change how a network trains, never what it is: they may differ
# between checkpoints of one run (a RESUME may override them).
TRAINING_ONLY = ("flow", "lm_init", "gradient_checkpointing", "history_noise", "prev_noise", "align")
DROPPED = ("optimizer_states", "lr_schedulers", "current_model_state", "averaging_state", "callbacks", "loops")


class AverageError(ValueError):
    pass


def _step(path: Path) -> int:
    return int(load_checkpoint(path).get("global_step", -1))


def select(inputs: list[str], last: int) -> list[Path]:
    """The checkpoint files to average, oldest first."""
    if last < 1:
        raise AverageError(f"--last must be at least 1, got {last}")
    paths = [Path(p) for p in inputs]
    if len(paths) == 1 and paths[0].is_dir():
        folder = checkpoint_dir(paths[0])
        if not folder.is_dir():
            raise AverageError(f"{paths[0]}: a folder without checkpoints/ (give a run folder or checkpoint files)")
        steps = {p: _step(p) for p in sorted(folder.glob("step_*.ckpt"))}
        last_ckpt = last_checkpoint(paths[0])
        if last_ckpt.is_file() and _step(last_ckpt) not in steps.values():
            steps[last_ckpt] = _step(last_ckpt)
        if len(steps) < 2:
            raise AverageError(f"{folder}: {len(steps)} checkpoint(s) with distinct steps; averaging needs two or "
                               "more (run.checkpoint_every_steps and run.keep_checkpoints set how many are kept)")
        return sorted(steps, key=steps.get)[-last:]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise AverageError(f"not a checkpoint file: {', '.join(missing)}")
    if len(paths) < 2:
        raise AverageError("give two or more checkpoint files, or one run folder")
    return paths


def _same(a, b) -> bool:
    """Deep equality of checkpoint payloads: dicts, lists, tensors (dtype, shape and values)."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _kept_parts(ckpt: dict) -> dict:
    """What the result takes whole from the newest input: every input must hold the same, or the
    averaged weights would be paired with one input's VAE, tokenizer or architecture."""
    model = dict((read_config(ckpt) or {}).get("model") or {})
    return {"VAE (voxlab_vae)": ckpt.get(VAE_KEY),
            "tokenizer (voxlab_tokenizer)": ckpt.get(TOKENIZER_KEY),
            "architecture (config model section)": {k: v for k, v in model.items() if k not in TRAINING_ONLY}}


def average(paths: list[Path]) -> dict:
    """The newest input's checkpoint with the mean state_dict of all inputs."""
    import torch

    ckpts = [load_checkpoint(p) for p in paths]
    first = ckpts[0].get("state_dict")
    if not isinstance(first, dict) or not first:
        raise AverageError(f"{paths[0]}: no state_dict (not a Lightning checkpoint)")
    experiment = (ckpts[0].get("voxlab_config") or {}).get("experiment")
    total = {k: v.double() if v.is_floating_point() else v for k, v in first.items()}
    kept = _kept_parts(ckpts[0])
    for path, ckpt in zip(paths[1:], ckpts[1:]):
        state = ckpt.get("state_dict") or {}
        other = (ckpt.get("voxlab_config") or {}).get("experiment")
        if other != experiment:
            raise AverageError(f"{path}: a checkpoint of {other!r}, {paths[0]} one of {experiment!r}")
        for part, value in _kept_parts(ckpt).items():
            if not _same(value, kept[part]):
                raise AverageError(f"{paths[0]} and {path} were made with a different {part}: the average "
                                   "would keep only the newest one's; average checkpoints of one run")
        if state.keys() != first.keys():
            diff = sorted(set(state) ^ set(first))
            raise AverageError(f"{path}: its weights differ from {paths[0]}'s in names: {diff[:8]}")
        for k, v in state.items():
            if v.shape != first[k].shape:
                raise AverageError(f"{path}: {k} has shape {tuple(v.shape)}, {tuple(first[k].shape)} in {paths[0]}")
            if v.is_floating_point():
                total[k] += v.double()
            elif not torch.equal(v, first[k]):
                raise AverageError(f"{path}: {k} ({v.dtype}) differs from {paths[0]}'s and cannot be averaged")
    out = {k: v for k, v in ckpts[-1].items() if k not in DROPPED}
    out["state_dict"] = {k: (total[k] / len(paths)).to(first[k].dtype) if first[k].is_floating_point() else first[k]
                         for k in first}
    out["voxlab_averaged"] = {"checkpoints": [str(p) for p in paths],
                              "steps": [int(c.get("global_step", -1)) for c in ckpts]}
    return out


def default_out(paths: list[Path], step: int) -> Path:
    return run_of_checkpoint(paths[-1]) / "averaged" / f"avg_last{len(paths)}_step{step}.ckpt"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="a run folder, or two or more checkpoint files")
    p.add_argument("--last", type=int, default=5, help="with a run folder: the newest N checkpoints")
    p.add_argument("--out", default=None, help="the checkpoint to write (must not exist)")
    args = p.parse_args(argv)

    try:
        paths = select(args.inputs, args.last)
        out_ckpt = average(paths)
        out = Path(args.out) if args.out else default_out(paths, int(out_ckpt.get("global_step", -1)))
        if out.exists():
            raise AverageError(f"{out} exists: nothing is overwritten; choose another --out (OUT=...)")
        atomic_torch_save(out_ckpt, out)
    except (AverageError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    steps = ", ".join(str(s) for s in out_ckpt["voxlab_averaged"]["steps"])
    print(f"averaged {len(paths)} checkpoints (steps {steps}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

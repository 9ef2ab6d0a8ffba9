"""Run folders: `runs/<experiment>/version_<N>/`, never overwritten.

A run folder holds `config.yaml` (the resolved config), `status.json`, `checkpoints/`
(`last.ckpt` and step checkpoints), `tensorboard/`, `csv/` and `eval/`.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from voxlab.checkpoint import CheckpointError, load_checkpoint

VERSION_RE = re.compile(r"^version_(\d+)$")


RUN_DIR_ENV = "VOXLAB_RUN_DIR"


def is_main_process() -> bool:
    """Rank zero of a multi-process launch (Lightning's own launcher, torchrun or SLURM), or no launch."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        if int(os.environ.get(var, 0) or 0) != 0:
            return False
    return True


def shared_run_dir(root: str | Path, experiment: str) -> Path:
    """The run folder of this process. Rank zero creates a new version; the other ranks use the
    one named by VOXLAB_RUN_DIR (set by rank zero before Lightning launches them, or by the user
    for torchrun / SLURM launches where every rank starts alone)."""
    given = os.environ.get(RUN_DIR_ENV)
    if given:
        path = Path(given)
        if is_main_process():
            path.mkdir(parents=True, exist_ok=True)
        else:
            deadline = time.time() + 120
            while not path.is_dir() and time.time() < deadline:
                time.sleep(0.5)
            if not path.is_dir():
                raise FileNotFoundError(f"{RUN_DIR_ENV}={path} was not created by rank zero")
        return path
    if not is_main_process():
        raise RuntimeError(f"a non-zero rank needs {RUN_DIR_ENV} (the run folder rank zero uses); "
                           "see the README's multi-node example")
    return new_run_dir(root, experiment)


def new_run_dir(root: str | Path, experiment: str) -> Path:
    """Create the next free version folder (mkdir is atomic: two runs never share one)."""
    parent = Path(root) / experiment
    parent.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in parent.iterdir() if (m := VERSION_RE.match(p.name))]
    n = max(taken, default=-1) + 1
    while True:
        path = parent / f"version_{n}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1


def list_runs(root: str | Path, experiment: str) -> list[Path]:
    parent = Path(root) / experiment
    if not parent.is_dir():
        return []
    runs = [p for p in parent.iterdir() if VERSION_RE.match(p.name)]
    return sorted(runs, key=lambda p: int(VERSION_RE.match(p.name).group(1)))


def write_status(run_dir: Path, state: str, **extra) -> None:
    data = {"state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
    tmp = run_dir / ".status.json.tmp"
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(run_dir / "status.json")


def read_status(run_dir: Path) -> dict:
    path = Path(run_dir) / "status.json"
    return json.loads(path.read_text()) if path.is_file() else {"state": "unknown"}


def checkpoints_newest_first(run_dir: Path) -> list[Path]:
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        return []
    return sorted(ckpt_dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)


def newest_loadable_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of a run that loads (a torn or corrupt one is skipped, with a note)."""
    for path in checkpoints_newest_first(run_dir):
        try:
            load_checkpoint(path)
            return path
        except CheckpointError as err:
            print(f"[resume] skipping {path}: {err}")
    return None


def resolve_resume(target: str | Path) -> tuple[Path, Path]:
    """`RESUME=` a run folder or a checkpoint file -> (run folder, checkpoint to resume from)."""
    target = Path(target)
    if target.is_file():
        run_dir = target.parent.parent if target.parent.name == "checkpoints" else target.parent
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"{target}: cannot find the run's config.yaml in {run_dir}")
        load_checkpoint(target)
        return run_dir, target
    if target.is_dir():
        if not (target / "config.yaml").is_file():
            raise FileNotFoundError(f"{target}: not a run folder (no config.yaml)")
        for stale in (target / "checkpoints").glob(".*.tmp*"):  # left by a process killed mid-write
            stale.unlink()
        ckpt = newest_loadable_checkpoint(target)
        if ckpt is None:
            raise FileNotFoundError(f"{target}: no loadable checkpoint in {target / 'checkpoints'}")
        return target, ckpt
    raise FileNotFoundError(f"RESUME={target}: neither a run folder nor a checkpoint file")
